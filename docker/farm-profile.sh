# /etc/profile.d/farm.sh — login shells find the farm first.
#
# Ray's cluster launcher runs every command on a node in a login shell, and so
# does KubeRay (`bash -lc`); /etc/profile resets PATH, so the image's ENV PATH
# alone is lost there. On a launcher node the farm's settings and secrets are
# synced to ~/farm-env/farm.env by `ray up` (file_mounts) and read here, so that
# `ray exec`, `ray submit` and `ray attach` see them too.
export PATH="/opt/venv/bin:${PATH}"
if [ -r "${HOME}/farm-env/farm.env" ]; then
    set -a
    . "${HOME}/farm-env/farm.env"
    set +a
fi
