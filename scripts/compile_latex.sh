#!/usr/bin/env bash
# Compile every standalone LaTeX table of a report with a real engine (pdflatex, from Debian's
# texlive-latex-base + texlive-latex-recommended: apt-get install -y --no-install-recommends ...).
#   bash scripts/compile_latex.sh results/cpu/tables
# Exits non-zero on the first table that does not compile; builds in a temp dir, writes nothing else.
set -euo pipefail
dir=${1:?usage: compile_latex.sh TABLES_DIR}
command -v pdflatex >/dev/null || { echo "pdflatex not found: apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0
for tex in "$dir"/*.tex; do
  cp "$tex" "$work/"
  name=$(basename "$tex" .tex)
  if ! (cd "$work" && pdflatex -interaction=nonstopmode -halt-on-error "$name.tex" >"$name.out" 2>&1); then
    echo "FAILED: $tex" >&2; tail -20 "$work/$name.out" >&2; exit 1
  fi
  n=$((n + 1))
done
echo "compiled $n tables from $dir with $(pdflatex --version | head -1)"
