#!/usr/bin/env bash
# Starts the libvirt daemons the hypervisor/libvirt tests build through, and prints their URIs.
# Idempotent: a daemon that already answers is left alone. Needs root (as `make test` runs).
#
#   bash testdata/libvirt/start.sh [all|system|remote|stop-remote]     (default: all)
#
# system  the host's own libvirtd (qemu:///system) and its virtlogd, started as daemons because
#         the test machines run without systemd.
# remote  a second, independent libvirtd that stands in for another host: it listens on
#         qemu+tcp://127.0.0.1:$INGOT_LIBVIRT_REMOTE_PORT/system (default 16599, no auth, loopback
#         only). Two root libvirtds cannot share /etc/libvirt, /run/libvirt, /var/lib/libvirt, …
#         (pid files, sockets, domain status, the qemu state dirs are all fixed paths of a
#         privileged daemon), so this one runs in its own mount namespace where those directories
#         are bind mounts of private ones under $INGOT_LIBVIRT_REMOTE_DIR. It shares the network
#         namespace, so TCP on 127.0.0.1 (its RPC port and the guests' SSH forwards) is reachable
#         from here, while its storage pool directory is not: files reach it only through the
#         libvirt API, as they would on a real remote host. A session daemon (qemu:///session)
#         was the other candidate, but it is not what a user's remote host runs: no DAC
#         relabelling, no libvirt-qemu user, a /session URI.
# stop-remote  stops the second daemon (by its pid files), for a clean restart.
set -euo pipefail

REMOTE_PORT=${INGOT_LIBVIRT_REMOTE_PORT:-16599}
REMOTE_DIR=${INGOT_LIBVIRT_REMOTE_DIR:-/var/tmp/ingot-libvirtd-remote}
SYSTEM_URI=qemu:///system
REMOTE_URI=qemu+tcp://127.0.0.1:$REMOTE_PORT/system

say() { echo "libvirt/start.sh: $*" >&2; }

# wait_for URI SECONDS: until virsh gets an answer, or fail with the daemon's log.
wait_for() {
	local uri=$1 secs=$2 log=$3 i
	for ((i = 0; i < secs * 5; i++)); do
		if virsh -q -c "$uri" uri >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	say "libvirtd at $uri did not answer within ${secs}s; its log ($log) ends with:"
	tail -n 20 "$log" >&2 || true
	exit 1
}

# alive PIDFILE: the process named by the pid file runs.
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

need_tools() {
	local t
	for t in libvirtd virtlogd virsh unshare; do
		command -v "$t" >/dev/null || {
			say "$t is missing; install it with: apt-get install libvirt-daemon-system libvirt-clients util-linux"
			exit 1
		}
	done
	if [[ $(id -u) != 0 ]]; then
		say "must run as root (the daemons are system daemons)"
		exit 1
	fi
}

# kvm_device gives /dev/kvm the group and mode udev gives it on a Debian host (root:kvm 0660; the
# libvirt-qemu user is in group kvm). Without udev (containers, these test machines) it stays
# root-only 0600, and libvirt 9.0 then finds its cached QEMU capabilities invalid on every call
# ("KVM was enabled when probing, but it is not available now"): it re-probes QEMU a dozen times,
# and a domain takes about 50 s to start instead of under one. Whether KVM really *works* is
# another matter, which ingot probes itself.
kvm_device() {
	if [[ -c /dev/kvm ]] && getent group kvm >/dev/null && [[ $(stat -c %G:%a /dev/kvm) != kvm:660 ]]; then
		say "giving /dev/kvm group kvm, mode 0660 (what udev does on a Debian host)"
		chgrp kvm /dev/kvm
		chmod 0660 /dev/kvm
	fi
}

start_system() {
	kvm_device
	if virsh -q -c "$SYSTEM_URI" uri >/dev/null 2>&1; then
		return 0
	fi
	mkdir -p /var/log/libvirt
	if ! alive /run/virtlogd.pid; then
		say "starting virtlogd"
		virtlogd -d
	fi
	if ! alive /run/libvirtd.pid; then
		say "starting libvirtd"
		libvirtd -d
	fi
	wait_for "$SYSTEM_URI" 30 /var/log/libvirt/libvirtd.log
}

start_remote() {
	kvm_device
	if virsh -q -c "$REMOTE_URI" uri >/dev/null 2>&1; then
		return 0
	fi
	if alive "$REMOTE_DIR/libvirtd.pid"; then
		say "the second libvirtd (pid $(cat "$REMOTE_DIR/libvirtd.pid")) runs but does not answer on $REMOTE_URI; run: bash $0 stop-remote"
		exit 1
	fi
	say "starting a second libvirtd on $REMOTE_URI (state in $REMOTE_DIR)"
	local d
	for d in etc run lib cache log; do
		mkdir -p "$REMOTE_DIR/$d"
	done
	chmod 0755 "$REMOTE_DIR"
	# The host's configuration, with the second daemon's listener: TCP on loopback only, no TLS,
	# no authentication (a test daemon; never do this on an address others can reach).
	if [[ ! -e $REMOTE_DIR/etc/.copied ]]; then
		cp -a /etc/libvirt/. "$REMOTE_DIR/etc/"
		touch "$REMOTE_DIR/etc/.copied"
	fi
	cat >"$REMOTE_DIR/etc/libvirtd.conf" <<-EOF
		# Written by testdata/libvirt/start.sh: the second (stand-in remote) test daemon.
		listen_tls = 0
		listen_tcp = 1
		listen_addr = "127.0.0.1"
		tcp_port = "$REMOTE_PORT"
		auth_tcp = "none"
		auth_unix_rw = "none"
		log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
	EOF
	# /var/lib/libvirt must keep the modes libvirt expects: the qemu user traverses it.
	mkdir -p "$REMOTE_DIR/lib/qemu" "$REMOTE_DIR/lib/images" "$REMOTE_DIR/cache/qemu" "$REMOTE_DIR/log/qemu"
	chmod 0755 "$REMOTE_DIR/lib" "$REMOTE_DIR/lib/images"
	unshare --mount --propagation private -- bash -euc '
		dir=$1
		mount --bind "$dir/etc" /etc/libvirt
		mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
		mount --bind "$dir/run" /run/libvirt
		mount --bind "$dir/lib" /var/lib/libvirt
		mount --bind "$dir/cache" /var/cache/libvirt
		mount --bind "$dir/log" /var/log/libvirt
		virtlogd -d -p "$dir/virtlogd.pid"
		libvirtd -d --listen -p "$dir/libvirtd.pid"
	' start-remote "$REMOTE_DIR"
	wait_for "$REMOTE_URI" 30 "$REMOTE_DIR/log/libvirtd.log"
}

stop_remote() {
	local p
	for p in libvirtd virtlogd; do
		if alive "$REMOTE_DIR/$p.pid"; then
			say "stopping the second $p (pid $(cat "$REMOTE_DIR/$p.pid"))"
			kill "$(cat "$REMOTE_DIR/$p.pid")"
		fi
	done
	for ((i = 0; i < 50; i++)); do
		alive "$REMOTE_DIR/libvirtd.pid" || alive "$REMOTE_DIR/virtlogd.pid" || return 0
		sleep 0.2
	done
	say "the second daemon did not stop within 10s"
	exit 1
}

case ${1:-all} in
all)
	need_tools
	start_system
	start_remote
	echo "$SYSTEM_URI"
	echo "$REMOTE_URI"
	;;
system)
	need_tools
	start_system
	echo "$SYSTEM_URI"
	;;
remote)
	need_tools
	start_remote
	echo "$REMOTE_URI"
	;;
stop-remote)
	stop_remote
	;;
*)
	say "usage: $0 [all|system|remote|stop-remote]"
	exit 2
	;;
esac
