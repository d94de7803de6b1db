# Summarise callgrind_annotate output per request (bench/run).
#   awk -v n=REQUESTS -v mode=inclusive|objects -f profile-summary.awk FILE
# inclusive: the top named functions with instructions per request;
# objects:   self instructions summed per binary or library.
function parse(line,   ir, rest, obj, k, o) {
    ir = line; sub(/^ */, "", ir); sub(/ .*/, "", ir); gsub(/,/, "", ir)
    if (!match(line, /\( *[0-9.]+%\)/)) return 0
    P = substr(line, RSTART + 1, RLENGTH - 3); gsub(/ /, "", P)
    rest = substr(line, RSTART + RLENGTH); sub(/^ +/, "", rest); sub(/ +$/, "", rest)
    obj = ""
    if (match(rest, /\[[^]]*\]$/)) {
        obj = substr(rest, RSTART + 1, RLENGTH - 2)
        rest = substr(rest, 1, RSTART - 1); sub(/ +$/, "", rest)
        k = split(obj, o, "/"); obj = o[k]
    }
    sub(/^.*:/, "", rest)
    IR = ir + 0; F = rest; O = obj
    return 1
}
/PROGRAM TOTALS/ { next }
/^ *[0-9,]+ \( *[0-9.]+%\) / {
    if (!parse($0)) next
    if (mode == "objects") { self[O == "" ? "?" : O] += IR; total += IR; next }
    if (F ~ /^0x/ || F ~ /below main|start_thread|clone|^\(/ ) next
    if (shown >= (top ? top : 30)) next
    shown++
    printf "%10.0f instr/req %6s%%  %s%s\n", IR / n, P, F, (O != "" && O != "keygate" ? "  [" O "]" : "")
}
END {
    if (mode == "objects") {
        for (o in self) printf "%10.0f instr/req %5.1f%%  %s\n", self[o] / n, 100 * self[o] / total, o | "sort -rn"
        close("sort -rn")
    }
}
