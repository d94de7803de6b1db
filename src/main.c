/* The keygate binary: hands the command line to the CLI. */
#include "cli/cli.h"

int main(int argc, char **argv)
{
    return kg_cli_main(argc, argv);
}
