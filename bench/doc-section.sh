# Sourced by the benchmark scripts: replace_section NAME REPORT replaces the section of
# docs/benchmarks.md that starts at the line `<!-- NAME-bench -->` (up to the next such marker
# or the end) with REPORT, its headings demoted one level, appended at the end. bench/run.sh
# rewrites the part before the first marker and keeps every marked section.
replace_section() {
  local name=$1 report=$2 doc=docs/benchmarks.md
  [ -f "$doc" ] || return 0
  awk -v m="<!-- $name-bench -->" '
    $0 == m { skip = 1; next }
    skip && /^<!-- [a-z]+-bench -->$/ { skip = 0 }
    !skip { print }
  ' "$doc" > "$doc.tmp"
  { echo '<!-- '"$name"'-bench -->'; echo; sed 's/^## /### /; s/^# \(.*\)$/## \1/' "$report"; echo; } >> "$doc.tmp"
  mv "$doc.tmp" "$doc"
}
