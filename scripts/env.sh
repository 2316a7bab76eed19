# Sourced by the scripts: puts the provisioned services on PATH.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -d "$root/.dev/venv/bin" ]; then
  export PATH="$PATH:$root/.dev/venv/bin"
fi
