#!/usr/bin/env bash
# Boot benchmark: wall time from QEMU start to "confguest-agent: ready" for
# the built image ($CONFGUEST_IMAGE or out/), against the same kernel booting
# a trivial /init (kernelcfg/testdata/tinyinit: prints one line, powers off),
# timed from QEMU start to that line. Both boots use the same QEMU command
# line (TCG, -m 128M, one vCPU, the same kernel command line and the root
# disk attached); only the initramfs differs. Runs alternate, RUNS each
# (default 5), after one warm-up of each. Prints every run with its ratio,
# the medians, and the ratio confguest/trivial (target: <= 1.10) two ways:
# the median of the per-run ratios (each run's two boots are adjacent in
# time, so a change in the machine's speed during the benchmark affects both
# alike) and the ratio of the medians. To show where the difference lies it
# also prints the medians from the kernel's "Run /init" line to the marker
# (user space only) and their difference, which does not depend on how fast
# the kernel boots. Last it prints what the agent's start read, from the
# agent's console line after ready (agent/cmd/agent/startup.go): bytes read
# through dm-verity (each one hashed) and the agent's pages in the page cache,
# once as booted and once from a warm-up boot with confguest.readahead_kb=0,
# where the page cache holds exactly the pages the agent touched.
#
# READAHEAD_KB=N boots the image (all but the readahead_kb=0 boot) with
# confguest.readahead_kb=N on its command line instead of PID 1's default.
# PAGES=FILE writes the agent's page bitmap of the readahead_kb=0 boot to FILE
# (build/bench/agentsize -pages FILE breaks it down by section and package);
# ONLY_STARTUP=1 stops after the two warm-up boots of the image and prints
# their startup figures (no timing runs).
#
# With AGENT_CONTROL=1 two more boots join each run: the same kernel, initramfs
# and root filesystem, but with build/bench/readyagent (a small Go program that
# prints the ready line) as /sbin/agent, on a dm-verity root rebuilt with
# mkrootfs and its command line; in the second (the reading control) readyagent
# first reads the image's agent binary, kept in that root, whole, so that the
# bytes the agent's read-ahead reads pass through dm-verity as they do at boot.
# Their figures show how much of the difference PID 1 and the verity root
# account for, how much reading and hashing the agent's bytes, and what is left
# for the agent's own start.
set -euo pipefail

runs=${RUNS:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
img=${CONFGUEST_IMAGE:-$root/out}
timeout_s=${BOOT_TIMEOUT:-180}

for f in bzImage initramfs.cpio.gz rootfs.img cmdline; do
	[[ -f $img/$f ]] || { echo "boot.sh: $img/$f missing: run make image or set CONFGUEST_IMAGE" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "boot.sh: qemu-system-x86_64 not found: install qemu-system-x86" >&2; exit 1; }
command -v cpio >/dev/null || { echo "boot.sh: cpio not found: install cpio" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The trivial initramfs: tinyinit as /init (it mounts devtmpfs for its console).
mkdir -p "$tmp/tiny"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -buildid=' -o "$tmp/tiny/init" ./kernelcfg/testdata/tinyinit)
(cd "$tmp/tiny" && echo init | cpio --quiet -o -H newc -R 0:0 | gzip -n >"$tmp/tiny.cpio.gz")

base_cmdline="$(tr -d '\n' <"$img/cmdline") confguest.tee=none"
cmdline="$base_cmdline${READAHEAD_KB:+ confguest.readahead_kb=$READAHEAD_KB}"
qemu_args=(-accel tcg -m 128M -smp 1 -nodefaults -no-reboot -no-user-config -display none
	-serial stdio -monitor none -kernel "$img/bzImage")

control=${AGENT_CONTROL:-0}
if [[ $control == 1 ]]; then
	command -v fsck.erofs >/dev/null || { echo "boot.sh: fsck.erofs not found: install erofs-utils" >&2; exit 1; }
	# control_root NAME [FILE]: the image's root with readyagent as /sbin/agent, in
	# $tmp/NAME.img, and its command line in ctl_cmdline_NAME. With FILE, the image's agent
	# stays in the root as FILE and readyagent reads FILE whole before its ready line.
	control_root() {
		local name=$1 file=${2:-} dir="$tmp/$1"
		fsck.erofs --extract="$dir" "$img/rootfs.img" >/dev/null
		[[ -z $file ]] || cp "$dir/sbin/agent" "$dir$file"
		(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid= -X main.readFirst=$file" -o "$dir/sbin/agent" ./build/bench/readyagent)
		(cd "$root" && go run ./rootfs/cmd/mkrootfs "$dir" "$dir.img") >"$dir.json"
		param() { grep -o "\"$1\": *\"\{0,1\}[0-9a-f]*" "$dir.json" | grep -o '[0-9a-f]*$'; }
		local c
		c=$(sed -e "s/confguest.roothash=[0-9a-f]*/confguest.roothash=$(param root_hash)/" \
			-e "s/confguest.salt=[0-9a-f]*/confguest.salt=$(param salt)/" \
			-e "s/confguest.datablocks=[0-9]*/confguest.datablocks=$(param data_blocks)/" \
			-e "s/confguest.hashoffset=[0-9]*/confguest.hashoffset=$(param hash_offset)/" <<<"$cmdline")
		[[ $c != "$cmdline" ]] || { echo "boot.sh: could not write the command line of $name from $dir.json" >&2; exit 1; }
		printf -v "ctl_cmdline_$name" '%s' "$c"
	}
	control_root ctl
	control_root rd /sbin/agent.bytes
fi

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# boot INITRD MARKER [ROOTFS CMDLINE]: prints the milliseconds from QEMU start
# until a console line contains MARKER and from "Run /init" until then, then
# stops QEMU. ROOTFS and CMDLINE default to the image's.
boot() {
	local initrd=$1 marker=$2 rootfs=${3:-$img/rootfs.img} append=${4:-$cmdline} start line end="" init=""
	start=$(now_ms)
	coproc QEMU { exec timeout "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" -append "$append" \
		-drive "file=$rootfs,if=virtio,format=raw,readonly=on" -initrd "$initrd" 2>&1; }
	local pid=$QEMU_PID
	while IFS= read -r line <&"${QEMU[0]}"; do
		if [[ -z $init && $line == *"Run /init"* ]]; then
			init=$(now_ms)
		fi
		if [[ $line == *"$marker"* ]]; then
			end=$(now_ms)
			break
		fi
	done
	# The agent's next lines say what its start read and which pages of its
	# binary are in the page cache (agent/cmd/agent/startup.go).
	: >"$tmp/startup.last"
	: >"$tmp/pages.last"
	# Other console lines (the kernel's) may come between them.
	if [[ -n $end && $marker == "confguest-agent: ready" ]]; then
		local n=0
		while ((n++ < 50)) && IFS= read -r -t 10 line <&"${QEMU[0]}"; do
			case $line in
			*"confguest-agent: startup pages:"*)
				printf '%s\n' "${line%$'\r'}" >"$tmp/pages.last"
				break
				;;
			*"confguest-agent: startup:"*) printf '%s\n' "${line%$'\r'}" >"$tmp/startup.last" ;;
			esac
		done
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	[[ -n $end && -n $init ]] || { echo "boot.sh: QEMU ended without printing \"Run /init\" and \"$marker\"" >&2; return 1; }
	echo "$((end - start)) $((end - init))"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "warm-up..." >&2
boot "$img/initramfs.cpio.gz" "confguest-agent: ready" >/dev/null
startup=$(cat "$tmp/startup.last")
# Without read-ahead the page cache holds only the pages the agent touched.
boot "$img/initramfs.cpio.gz" "confguest-agent: ready" "$img/rootfs.img" "$base_cmdline confguest.readahead_kb=0" >/dev/null
touched=$(cat "$tmp/startup.last")
if [[ -n ${PAGES:-} ]]; then
	cp "$tmp/pages.last" "$PAGES"
	echo "pages the agent touched (readahead_kb=0) in $PAGES: go run ./build/bench/agentsize -agent -pages $PAGES" >&2
fi
[[ ${ONLY_STARTUP:-0} != 1 ]] || { printf 'as booted: %s\nreadahead_kb=0: %s\n' "${startup#*startup: }" "${touched#*startup: }"; exit 0; }
boot "$tmp/tiny.cpio.gz" "tinyinit: " >/dev/null
if [[ $control == 1 ]]; then
	boot "$img/initramfs.cpio.gz" "confguest-agent: ready" "$tmp/ctl.img" "$ctl_cmdline_ctl" >/dev/null
	boot "$img/initramfs.cpio.gz" "confguest-agent: ready" "$tmp/rd.img" "$ctl_cmdline_rd" >/dev/null
fi

ours=() tiny=() ours_u=() tiny_u=() ratios=() ctl=() ctl_u=() ctl_ratios=() rd=() rd_u=() rd_ratios=()
# control_run NAME LABEL RUN TRIVIAL_MS: boots control NAME (control_root) once, adds its
# times and ratio to the trivial init to the arrays NAME, NAME_u and NAME_ratios, and prints
# the run's line.
control_run() {
	local name=$1 label=$2 run=$3 t=$4 c cu cr
	local -n times=$name times_u=${name}_u times_r=${name}_ratios cl=ctl_cmdline_$name
	read -r c cu < <(boot "$img/initramfs.cpio.gz" "confguest-agent: ready" "$tmp/$name.img" "$cl")
	[[ -n ${c:-} ]] || { echo "boot.sh: run $run of the $label failed" >&2; exit 1; }
	cr=$(awk -v c="$c" -v t="$t" 'BEGIN { printf "%.3f", c / t }')
	times+=("$c") times_u+=("$cu") times_r+=("$cr")
	printf 'run %d: %s %d ms (user space %d), ratio %s\n' "$run" "$label" "$c" "$cu" "$cr"
}
for i in $(seq "$runs"); do
	read -r o ou < <(boot "$img/initramfs.cpio.gz" "confguest-agent: ready")
	read -r t tu < <(boot "$tmp/tiny.cpio.gz" "tinyinit: ")
	[[ -n ${o:-} && -n ${t:-} ]] || { echo "boot.sh: run $i failed" >&2; exit 1; }
	r=$(awk -v o="$o" -v t="$t" 'BEGIN { printf "%.3f", o / t }')
	ours+=("$o") tiny+=("$t") ours_u+=("$ou") tiny_u+=("$tu") ratios+=("$r")
	printf 'run %d: confguest %d ms (user space %d), trivial init %d ms (user space %d), ratio %s\n' "$i" "$o" "$ou" "$t" "$tu" "$r"
	if [[ $control == 1 ]]; then
		control_run ctl "control (readyagent as /sbin/agent)" "$i" "$t"
		control_run rd "reading control (readyagent reads the agent binary first)" "$i" "$t"
	fi
done
mo=$(printf '%s\n' "${ours[@]}" | median)
mt=$(printf '%s\n' "${tiny[@]}" | median)
mou=$(printf '%s\n' "${ours_u[@]}" | median)
mtu=$(printf '%s\n' "${tiny_u[@]}" | median)
mr=$(printf '%s\n' "${ratios[@]}" | median)
lo=$(printf '%s\n' "${ratios[@]}" | sort -n | head -1)
hi=$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)
printf 'median "Run /init" -> marker: confguest %s ms, trivial init %s ms (difference %s ms)\n' "$mou" "$mtu" "$(awk -v a="$mou" -v b="$mtu" 'BEGIN { print a - b }')"
printf 'median QEMU start -> "confguest-agent: ready": %s ms\n' "$mo"
printf 'median QEMU start -> trivial init line:       %s ms\n' "$mt"
awk -v o="$mo" -v t="$mt" 'BEGIN { printf "ratio of the medians: %.3f\n", o / t }'
printf 'ratio confguest/trivial, median of %d runs: %s (runs %s-%s; target <= 1.10)\n' "$runs" "$mr" "$lo" "$hi"
printf 'what the agent start read, as booted: %s\n' "${startup#*startup: }"
printf 'the same with confguest.readahead_kb=0 (page cache = pages touched): %s\n' "${touched#*startup: }"
if [[ $control == 1 ]]; then
	printf 'control, readyagent as /sbin/agent: median %s ms, "Run /init" -> marker %s ms, ratio to the trivial init (median of %d runs) %s\n' \
		"$(printf '%s\n' "${ctl[@]}" | median)" "$(printf '%s\n' "${ctl_u[@]}" | median)" "$runs" "$(printf '%s\n' "${ctl_ratios[@]}" | median)"
	printf 'reading control, readyagent reading the agent binary whole first: median %s ms, "Run /init" -> marker %s ms, ratio to the trivial init (median of %d runs) %s\n' \
		"$(printf '%s\n' "${rd[@]}" | median)" "$(printf '%s\n' "${rd_u[@]}" | median)" "$runs" "$(printf '%s\n' "${rd_ratios[@]}" | median)"
fi
