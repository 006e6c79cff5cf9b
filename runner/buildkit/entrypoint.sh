#!/bin/sh
# Start buildkitd in the background, then sshd in the foreground (PID 1's job).
# Arguments are passed on to sshd (for example: -p 2222).
set -eu

mkdir -p /run/sshd /run/buildkit
# A runner started without an injected host key still needs one to accept logins.
if ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
    ssh-keygen -A
fi

# RUN steps go under this container's own cgroup, so its memory and CPU limits bind
# them (buildkitd has no flag for it, only [worker.oci] defaultCgroupParent).
config=/etc/lian/buildkitd.toml
cg=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3; exit }' /proc/self/cgroup)
[ -n "$cg" ] || cg=$(awk -F: '$1 == "0" { print $3; exit }' /proc/self/cgroup)
mkdir -p /etc/lian
if [ -n "$cg" ] && [ "$cg" != "/" ]; then
    printf '[worker.oci]\n  defaultCgroupParent = "%s"\n' "$cg" >"$config"
else
    : >"$config"
fi

# shellcheck disable=SC2086 # BUILDKITD_FLAGS is a list of flags on purpose
buildkitd --config "$config" ${BUILDKITD_FLAGS:-} >/var/log/buildkitd.log 2>&1 &

exec /usr/sbin/sshd -D -e "$@"
