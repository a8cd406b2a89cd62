#!/usr/bin/env bash
# Exports the paper's own S5/LAST model and train-step code (msgwak/LAST, built on
# lindermanlab/S5) into .ref/LAST, for bench/reference_step.py to time beside ours.
#
# That code is NOT ours and is NOT committed: .ref/ is listed in .git/info/exclude
# (this script adds it there), never in .gitignore. It is exported at run time from a
# copy of the reference repository and used unchanged; the compatibility shims for
# current JAX/flax live in bench/reference_step.py.
#
#   bench/fetch_reference.sh REPO [--rev REV] [--deps]
#
#   REPO      the msgwak/LAST repository: a directory (a clone, or a bare git
#             directory) or a git URL, e.g. https://github.com/msgwak/LAST (cloned
#             without history into a temporary folder)
#   --rev     revision to export (default HEAD)
#   --deps    also copy the pure-Python packages our train step imports but an
#             accelerator image may lack (clu, wrapt) from this checkout's .venv into
#             .ref/site; bench/reference_step.py falls back to them only when they are
#             not installed. Carry .ref to the device machine along with the tree.
set -euo pipefail

usage="usage: bench/fetch_reference.sh REPO [--rev REV] [--deps], REPO the msgwak/LAST repository (a directory or a git URL such as https://github.com/msgwak/LAST)"
root="$(cd "$(dirname "$0")/.." && pwd)"
repo=""
rev=HEAD
deps=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rev) rev="$2"; shift 2 ;;
    --deps) deps=1; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "unknown argument $1; $usage" >&2; exit 2 ;;
    *) [[ -z $repo ]] || { echo "one REPO only; $usage" >&2; exit 2; }; repo="$1"; shift ;;
  esac
done
[[ -n $repo ]] || { echo "$usage" >&2; exit 2; }

mirror="$repo"
if [[ ! -d $repo ]]; then
  case "$repo" in
    *://*|*@*:*) ;;
    *) echo "no directory $repo and not a git URL; $usage" >&2; exit 2 ;;
  esac
  mirror="$(mktemp -d)"
  trap 'rm -rf "$mirror"' EXIT
  git clone --quiet --bare --filter=blob:none "$repo" "$mirror"
fi
if ! git -C "$mirror" rev-parse --verify -q "$rev^{commit}" >/dev/null; then
  echo "no msgwak/LAST revision $rev in $repo; $usage" >&2
  exit 1
fi

exclude="$(git -C "$root" rev-parse --git-path info/exclude)"
case "$exclude" in /*) ;; *) exclude="$root/$exclude" ;; esac
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.ref/' "$exclude" 2>/dev/null || echo '/.ref/' >> "$exclude"

# Only the model, SSM and train-step modules: the data loaders, train.py (wandb) and
# run_train.py are not needed to time a step.
files=(s5/__init__.py s5/ssm_init.py s5/ssm.py s5/layers.py s5/seq_model.py s5/train_helpers.py)
dest="$root/.ref/LAST"
rm -rf "$dest"
mkdir -p "$dest"
git -C "$mirror" archive --format=tar "$rev" -- "${files[@]}" | tar -x -C "$dest"
commit="$(git -C "$mirror" rev-parse "$rev^{commit}")"
cat > "$dest/SOURCE" <<EOF
msgwak/LAST $commit, exported by bench/fetch_reference.sh from $repo.
Not part of last-nnx and not committed (.ref/ is in .git/info/exclude).
EOF
echo "exported ${#files[@]} files of msgwak/LAST $commit into $dest"

if [[ $deps == 1 ]]; then
  site="$("$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$root/.ref/site"
  for pkg in clu wrapt; do
    rm -rf "$root/.ref/site/$pkg"
    # Python sources only: wrapt falls back to pure Python without its C extension.
    (cd "$site" && find "$pkg" -name '*.py' -print0 | tar --null -cf - -T -) | tar -x -C "$root/.ref/site"
  done
  echo "copied clu and wrapt (pure Python) into $root/.ref/site"
fi
