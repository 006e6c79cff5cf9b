#!/usr/bin/env bash
# The baseline for bench/e2e_vs_shell.py: the steps `lian build` takes on the docker-local
# provider with buildah, done by hand. Same runner image and container flags (see
# lian_docker_local/provider.py and container.py), same rsync, same buildah argv, same
# cache refs. What it leaves out is what lian adds: the registry check, reaping, builder
# probes, cgroup readings, the docker config file, digest verification and history.
#
# usage: baseline_build.sh CONTEXT_DIR IMAGE_REF CACHE_REPO SSH_KEY [RUNNER_IMAGE]
# Phase timings go to stderr as "phase NAME SECONDS". The runner container carries the
# label lian.bench=$BENCH_LABEL (default "baseline").
set -euo pipefail

context=$1 image=$2 cache_repo=$3 client_key=$4 runner_image=${5:-lian-runner:debian}
docker=/usr/bin/docker
session=$(printf '%04x%04x' "$RANDOM" "$RANDOM")
remote_dir=/tmp/bench-$session
work=$(mktemp -d)
container=""

cleanup() {
  [[ -n $container ]] && $docker rm -f -v "$container" >/dev/null 2>&1 || true
  [[ -n ${ssh_base:-} ]] && "${ssh_base[@]}" -O exit root@127.0.0.1 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now_us() { echo "${EPOCHREALTIME/./}"; }
last=$(now_us)
phase() { # name: seconds since the previous phase ended
  local now
  now=$(now_us)
  printf 'phase %s %d.%06d\n' "$1" $(((now - last) / 1000000)) $(((now - last) % 1000000)) >&2
  last=$now
}

# A free port for sshd (host networking): nothing answers a connect on it.
while :; do
  port=$((20000 + RANDOM % 40000))
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
done

# The session host key and the authorized client key, copied in before start.
mkdir -p "$work/keys/etc/lian"
ssh-keygen -q -t ed25519 -N '' -C "" -f "$work/keys/etc/lian/ssh_host_ed25519_key"
ssh-keygen -y -f "$client_key" >"$work/keys/etc/lian/authorized_keys"
host_pub=$(cut -d' ' -f1,2 "$work/keys/etc/lian/ssh_host_ed25519_key.pub")
rm "$work/keys/etc/lian/ssh_host_ed25519_key.pub"
echo "[127.0.0.1]:$port $host_pub" >"$work/known_hosts"

start_script="set -eu
mkdir -p /run/sshd && chmod 0755 /run/sshd
exec /usr/sbin/sshd -D -e -p $port -h /etc/lian/ssh_host_ed25519_key \
  -o ListenAddress=127.0.0.1 -o AuthorizedKeysFile=/etc/lian/authorized_keys \
  -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
  -o PermitRootLogin=prohibit-password -o UseDNS=no"

# Tier 2c-4g: 4 GiB without swap, 2 CPUs (the machine has 2).
container=$($docker create --name "lian-bench-$session" --label "lian.bench=${BENCH_LABEL:-baseline}" \
  --network host --memory 4g --memory-swap 4g --cpus 2 \
  --cap-add SYS_ADMIN --cap-add MKNOD --cap-add SYS_CHROOT --cap-add SETFCAP \
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
  --entrypoint /bin/sh "$runner_image" -c "$start_script")
tar -C "$work/keys" -c etc | $docker cp - "$container:/"
$docker start "$container" >/dev/null
phase provision

for _ in $(seq 1 200); do
  banner=$(timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 4 <&3" 2>/dev/null || true)
  [[ $banner == SSH- ]] && break
  sleep 0.1
done
ssh_base=(ssh -F /dev/null -i "$client_key" -p "$port"
  -o "UserKnownHostsFile=$work/known_hosts" -o GlobalKnownHostsFile=/dev/null
  -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes
  -o LogLevel=ERROR -o ControlMaster=auto -o "ControlPath=$work/ssh.sock"
  -o ControlPersist=60)
"${ssh_base[@]}" root@127.0.0.1 mkdir -p -m 700 "$remote_dir" "$remote_dir/context"
phase ssh

rsync -a --delete -e "${ssh_base[*]}" "$context/" "root@127.0.0.1:$remote_dir/context/"
phase sync

buildah=(buildah --storage-driver vfs)
"${ssh_base[@]}" root@127.0.0.1 "${buildah[@]}" build --isolation chroot --layers \
  --format oci -f "$remote_dir/context/Dockerfile" \
  --cache-from "$cache_repo" --cache-to "$cache_repo" --tls-verify=false \
  -t "$image" "$remote_dir/context" >&2
"${ssh_base[@]}" root@127.0.0.1 "${buildah[@]}" push --format oci --tls-verify=false \
  --digestfile "$remote_dir/digest-0" "$image" "docker://$image" >&2
digest=$("${ssh_base[@]}" root@127.0.0.1 cat "$remote_dir/digest-0")
phase build

"${ssh_base[@]}" -O exit root@127.0.0.1 2>/dev/null || true
$docker rm -f -v "$container" >/dev/null
container=""
phase destroy
echo "$digest"
