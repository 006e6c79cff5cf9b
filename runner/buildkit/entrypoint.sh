#!/bin/sh
# Start buildkitd in the background, then sshd in the foreground (PID 1's job).
# Arguments are passed on to sshd (for example: -p 2222).
set -eu

mkdir -p /run/sshd /run/buildkit
# A runner started without an injected host key still needs one to accept logins.
if ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
    ssh-keygen -A
fi

# shellcheck disable=SC2086 # BUILDKITD_FLAGS is a list of flags on purpose
buildkitd ${BUILDKITD_FLAGS:-} >/var/log/buildkitd.log 2>&1 &

exec /usr/sbin/sshd -D -e "$@"
