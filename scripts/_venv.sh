# Sourced by scripts/*: make .venv with a Python >= 3.11 and install zfile into it.
# Usage: ensure_venv [pip extras spec, e.g. ".[test]"]
ensure_venv() {
    local spec="${1:-.}"
    local py="${PYTHON:-python3}"
    if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "zfile needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
        exit 2
    fi
    if [ ! -x .venv/bin/python ]; then
        "$py" -m venv .venv
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp=".venv/.zfile-installed-$(echo "$spec" | tr -c 'a-z' '_')"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "installing zfile ($spec) into .venv" >&2
        if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
               .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"; } \
               > .venv/install.log 2>&1; then
            cat .venv/install.log >&2
            echo "pip install failed (log above, also in .venv/install.log)" >&2
            exit 1
        fi
        touch "$stamp"
    fi
}
