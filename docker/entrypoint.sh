#!/usr/bin/env bash
# The image's entry point, run by tini (PID 1):
#   lab  JupyterLab on $JUPYTER_IP:$JUPYTER_PORT (default 0.0.0.0:8888) as the non-root user
#   ssh  sshd on $SSH_LISTEN:$SSH_PORT (key-only, for $NB_USER), then JupyterLab as above
#   anything else is run as given, as the non-root user, e.g. `python -m helpers run --quick`
# Started as root (compose, `docker run --user root`, the ssh target), it first gives $NB_USER
# the uid/gid of NB_UID/NB_GID, else of the mounted work folders (notebooks, outputs,
# checkpoints, data: the first not owned by root), hands root-owned mount points (folders
# Docker created) to that user, then drops to it (jupyter docker-stacks' convention). Mounts
# owned by root inside (rootless Docker maps your user to root) keep root, which is you.
# GPU_DEVICE=N: this container's CUDA work uses GPU N only, in Lab and in SSH sessions.
# Token: $JUPYTER_TOKEN, else a random one, printed once. Public key for ssh: $SSH_PUBLIC_KEY,
# else a file mounted at $SSH_AUTHORIZED_KEYS (default /etc/ssh/authorized_keys).
set -euo pipefail
NB_USER=${NB_USER:-tutor}
WORKSPACE=${WORKSPACE:-/workspace}
TOKEN_FILE=/tmp/jupyter-token  # read by healthcheck.py; only its owner (and root) can read it
MOUNTS=("$WORKSPACE/notebooks" "${OUTPUT_DIR:-$WORKSPACE/outputs}"
        "${CHECKPOINT_DIR:-$WORKSPACE/checkpoints}" "${DATA_DIR:-$WORKSPACE/data}")
DROP=()  # the prefix that runs a command as the notebook user (empty: as we are)

die() { echo "entrypoint: $*" >&2; exit 64; }

# GPU_DEVICE pins this container's CUDA work to one GPU (an index or a GPU-UUID) of those the
# container sees; `docker run --gpus '"device=N"'` isolates harder (nvidia-smi shows only N).
if [ -n "${GPU_DEVICE:-}" ]; then
  [[ "$GPU_DEVICE" =~ ^([0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-fA-F/-]+)$ ]] \
    || die "GPU_DEVICE='${GPU_DEVICE}' is not allowed: use one GPU index (0, 1, ...) or a GPU-/MIG- UUID"
  export CUDA_VISIBLE_DEVICES="$GPU_DEVICE"
fi

owner_of_mounts() {  # "uid gid" of NB_UID/NB_GID, else of the first work folder not owned by root
  local d
  if [ -n "${NB_UID:-}" ]; then echo "$NB_UID ${NB_GID:-$NB_UID}"; return; fi
  for d in "${MOUNTS[@]}"; do
    if [ -d "$d" ] && [ "$(stat -c %u "$d")" != 0 ]; then stat -c '%u %g' "$d"; return; fi
  done
  echo "0 0"
}

adopt_user() {  # as root: NB_USER takes the mounts' uid/gid; root-owned mount points become its
  local uid gid d
  [[ "${NB_UID:-0}" =~ ^[0-9]+$ && "${NB_GID:-0}" =~ ^[0-9]+$ ]] \
    || die "NB_UID='${NB_UID:-}' NB_GID='${NB_GID:-}' are not allowed: use numeric ids"
  read -r uid gid < <(owner_of_mounts)
  if [ "$uid" = 0 ]; then
    echo "entrypoint: the work folders belong to root here (rootless Docker maps your user to" \
      "root): running as root, which writes files as you on the host"
    export HOME=/root; JUPYTER_ARGS+=(--allow-root); return
  fi
  [ "$(id -g "$NB_USER")" = "$gid" ] || groupmod -o -g "$gid" "$NB_USER"
  [ "$(id -u "$NB_USER")" = "$uid" ] || usermod -o -u "$uid" "$NB_USER"
  chown "$uid:$gid" "$WORKSPACE"
  for d in "${MOUNTS[@]}"; do
    [ -d "$d" ] || continue
    if ! mountpoint -q "$d"; then chown -R "$uid:$gid" "$d"  # the image's own copy
    elif [ "$(stat -c %u "$d")" = 0 ]; then chown "$uid:$gid" "$d"  # a folder Docker created
    fi
  done
  export HOME="/home/$NB_USER" USER="$NB_USER" LOGNAME="$NB_USER"
  DROP=(setpriv "--reuid=$uid" "--regid=$gid" --init-groups)
}

JUPYTER_ARGS=()
run_lab() {  # exec JupyterLab as the notebook user
  if [ -z "${JUPYTER_TOKEN:-}" ]; then
    JUPYTER_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(24))')
    echo "JupyterLab token (generated): ${JUPYTER_TOKEN}"
    # LAB_HOST_PORT: the port compose publishes Lab on (the container's own port otherwise).
    echo "open http://127.0.0.1:${LAB_HOST_PORT:-$JUPYTER_PORT}/lab?token=${JUPYTER_TOKEN}"
  else
    echo "JupyterLab token: from JUPYTER_TOKEN"
  fi
  export JUPYTER_TOKEN  # jupyter_server reads it from the environment: not visible in `ps`
  (umask 077 && printf '%s' "$JUPYTER_TOKEN" >"$TOKEN_FILE")
  exec "${DROP[@]}" jupyter lab --no-browser --ip="${JUPYTER_IP:-0.0.0.0}" \
    --port="${JUPYTER_PORT}" --ServerApp.root_dir="$WORKSPACE" "${JUPYTER_ARGS[@]}"
}

authorized_keys() {  # the public key(s) to install, from the variable or the mounted file
  local file=${SSH_AUTHORIZED_KEYS:-/etc/ssh/authorized_keys}
  if [ -n "${SSH_PUBLIC_KEY:-}" ]; then printf '%s\n' "$SSH_PUBLIC_KEY"
  elif [ -s "$file" ]; then cat "$file"
  else die "ssh: no public key; set SSH_PUBLIC_KEY or mount one at $file"
  fi
}

session_env() {  # sshd starts sessions with a clean environment: hand them this container's
  local name line=()
  for name in PATH LD_LIBRARY_PATH CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES \
      NVIDIA_DRIVER_CAPABILITIES WORKSPACE DATA_DIR CHECKPOINT_DIR OUTPUT_DIR WEIGHTS_DIR \
      HELPERS_OFFLINE PYTHONUNBUFFERED; do
    if [ -n "${!name:-}" ]; then line+=("\"$name=${!name}\""); fi
  done
  echo "SetEnv ${line[*]}"
}

run_ssh() {  # host keys at first start, the user's key, the sessions' env, sshd, then Lab
  [ "$(id -u)" = 0 ] || die "ssh: the ssh target starts as root to run sshd (got uid $(id -u))"
  local keys
  keys=$(authorized_keys)
  adopt_user
  [ "${#DROP[@]}" -gt 0 ] || die "ssh: logins are for $NB_USER; give NB_UID/NB_GID or mount" \
    "folders owned by your user (they belong to root here)"
  ssh-keygen -A >/dev/null  # generates only the missing host keys: new per container
  # Written by the user itself: root here holds no DAC_OVERRIDE/FOWNER (compose drops them).
  printf '%s\n' "$keys" | "${DROP[@]}" sh -c \
    'umask 077 && mkdir -p "$HOME/.ssh" && cat >"$HOME/.ssh/authorized_keys"'
  session_env >/etc/ssh/sshd_config.d/05-session-env.conf
  /usr/sbin/sshd -D -e -p "${SSH_PORT:-2222}" -o "ListenAddress=${SSH_LISTEN:-0.0.0.0}" \
    -o "AllowUsers=${NB_USER}" &
  echo "sshd: ${NB_USER}@<host> -p ${SSH_HOST_PORT:-${SSH_PORT:-2222}}, public-key login only"
  run_lab
}

if [ "$(id -u)" = 0 ] && [ "${1:-lab}" != ssh ]; then adopt_user; fi
case "${1:-lab}" in
  lab) run_lab ;;
  ssh) run_ssh ;;
  *) exec "${DROP[@]}" "$@" ;;
esac
