#!/usr/bin/env bash
# The image's entry point, run by tini (PID 1):
#   lab  JupyterLab on $JUPYTER_IP:$JUPYTER_PORT (default 0.0.0.0:8888) as the non-root user
#   ssh  sshd on $SSH_LISTEN:$SSH_PORT (key-only, for $NB_USER), then JupyterLab as above
#   anything else is run as given, e.g. `python -m helpers run --quick`
# GPU_DEVICE=N: this container's CUDA work uses GPU N only.
# Token: $JUPYTER_TOKEN, else a random one, printed once. Public key for ssh: $SSH_PUBLIC_KEY,
# else a file mounted at $SSH_AUTHORIZED_KEYS (default /etc/ssh/authorized_keys).
set -euo pipefail
NB_USER=${NB_USER:-tutor}
TOKEN_FILE=/tmp/jupyter-token  # read by healthcheck.py; only its owner (and root) can read it

die() { echo "entrypoint: $*" >&2; exit 64; }

# GPU_DEVICE pins this container's CUDA work to one GPU (an index or a GPU-UUID) of those the
# container sees; `docker run --gpus '"device=N"'` isolates harder (nvidia-smi shows only N).
if [ -n "${GPU_DEVICE:-}" ]; then
  [[ "$GPU_DEVICE" =~ ^([0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-fA-F/-]+)$ ]] \
    || die "GPU_DEVICE='${GPU_DEVICE}' is not allowed: use one GPU index (0, 1, ...) or a GPU-/MIG- UUID"
  export CUDA_VISIBLE_DEVICES="$GPU_DEVICE"
fi

run_lab() {  # exec JupyterLab; "$@" is a prefix that drops to the non-root user when needed
  if [ -z "${JUPYTER_TOKEN:-}" ]; then
    JUPYTER_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(24))')
    echo "JupyterLab token (generated): ${JUPYTER_TOKEN}"
    echo "open http://127.0.0.1:${JUPYTER_PORT}/lab?token=${JUPYTER_TOKEN}"
  else
    echo "JupyterLab token: from JUPYTER_TOKEN"
  fi
  export JUPYTER_TOKEN  # jupyter_server reads it from the environment: not visible in `ps`
  (umask 077 && printf '%s' "$JUPYTER_TOKEN" >"$TOKEN_FILE")
  exec "$@" jupyter lab --no-browser --ip="${JUPYTER_IP:-0.0.0.0}" --port="${JUPYTER_PORT}" \
    --ServerApp.root_dir="${WORKSPACE:-/workspace}"
}

authorized_keys() {  # the public key(s) to install, from the variable or the mounted file
  local file=${SSH_AUTHORIZED_KEYS:-/etc/ssh/authorized_keys}
  if [ -n "${SSH_PUBLIC_KEY:-}" ]; then printf '%s\n' "$SSH_PUBLIC_KEY"
  elif [ -s "$file" ]; then cat "$file"
  else die "ssh: no public key; set SSH_PUBLIC_KEY or mount one at $file"
  fi
}

run_ssh() {  # host keys at first start, the user's key, sshd in this process group, then Lab
  [ "$(id -u)" = 0 ] || die "ssh: the ssh target starts as root to run sshd (got uid $(id -u))"
  local home keys
  home=$(getent passwd "$NB_USER" | cut -d: -f6)
  ssh-keygen -A >/dev/null  # generates only the missing host keys: new per container
  install -d -m 700 -o "$NB_USER" -g "$NB_USER" "$home/.ssh"
  keys="$home/.ssh/authorized_keys"
  authorized_keys >"$keys"
  chown "$NB_USER:$NB_USER" "$keys" && chmod 600 "$keys"
  /usr/sbin/sshd -D -e -p "${SSH_PORT:-2222}" -o "ListenAddress=${SSH_LISTEN:-0.0.0.0}" \
    -o "AllowUsers=${NB_USER}" &
  echo "sshd: ${NB_USER}@<host> -p ${SSH_PORT:-2222}, public-key login only"
  chown "$NB_USER:$NB_USER" "${WORKSPACE:-/workspace}"
  export HOME="$home" USER="$NB_USER"
  run_lab setpriv --reuid="$NB_USER" --regid="$NB_USER" --init-groups
}

case "${1:-lab}" in
  lab) run_lab ;;
  ssh) run_ssh ;;
  *) exec "$@" ;;
esac
