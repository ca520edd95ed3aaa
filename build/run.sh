#!/usr/bin/env bash
# run.sh OUTDIR: boots the built guest image under QEMU (TCG) with the root filesystem
# attached, prints the serial console, and powers the guest off once the agent is ready.
set -euo pipefail
out=${1:-out}
d=$(mktemp -d /tmp/confguest-run.XXXXXX)
qpid=""
cleanup() { kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
qemu-system-x86_64 -accel tcg -m 256M -smp 1 -nodefaults -no-reboot -display none \
	-kernel "$out/bzImage" -initrd "$out/initramfs.cpio.gz" \
	-append "$(cat "$out/cmdline") confguest.tee=none" \
	-drive "file=$out/rootfs.img,format=raw,if=virtio,readonly=on" \
	-serial "file:$d/console.log" -qmp "unix:$d/qmp.sock,server=on,wait=off" &
qpid=$!
tail -F "$d/console.log" 2>/dev/null &
deadline=$((SECONDS + 120))
until grep -q 'confguest-agent: ready' "$d/console.log" 2>/dev/null; do
	if ! kill -0 "$qpid" 2>/dev/null; then
		echo "run: QEMU exited before the agent was ready" >&2
		exit 1
	fi
	if [ $SECONDS -gt $deadline ]; then
		echo "run: the guest did not become ready within 120s" >&2
		exit 1
	fi
	sleep 0.2
done
echo "run: guest ready; powering off"
printf '{"execute":"qmp_capabilities"}{"execute":"system_powerdown"}' | timeout 5 socat - "UNIX-CONNECT:$d/qmp.sock" >/dev/null 2>&1 || kill "$qpid"
wait "$qpid" || true
qpid=""
