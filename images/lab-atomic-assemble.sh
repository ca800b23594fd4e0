#!/bin/bash
# Assemble lab-atomic on a blank disk; runs as root inside the builder VM.
# usage: lab-atomic-assemble.sh TARGET_DISK ROOTFS_TAR_DISK VG ROOT_SIZE BOOT_SIZE
set -euxo pipefail
target=$1 tarball=$2 vg=$3 root_size=$4 boot_size=$5
sysroot=/mnt/sysroot

# vda1 /boot, vda2 the LVM physical volume (msdos label, as Atomic Host's BIOS images)
parted -s "$target" mklabel msdos \
    mkpart primary ext4 1MiB "$boot_size" set 1 boot on \
    mkpart primary "$boot_size" 100% set 2 lvm on
udevadm settle
boot_part=$target-part1 pv=$target-part2

mkfs.ext4 -q -b 4096 -L boot "$boot_part"  # 4 KiB blocks: GRUB reads the kernel in fewer, larger pieces
pvcreate -y "$pv"
vgcreate "$vg" "$pv"
lvcreate -y -L "$root_size" -n root "$vg"
mkfs.xfs -q -L root "/dev/$vg/root"   # ftype=1, the mkfs.xfs default

mkdir -p "$sysroot"
mount "/dev/$vg/root" "$sysroot"
mkdir -p "$sysroot/boot"
mount "$boot_part" "$sysroot/boot"
tar -xpf "$tarball" --xattrs --xattrs-include='*' --numeric-owner -C "$sysroot"

cat > "$sysroot/etc/fstab" <<FSTAB
/dev/mapper/$vg-root / xfs defaults 0 0
UUID=$(blkid -s UUID -o value "$boot_part") /boot ext4 defaults 0 2
FSTAB

for fs in dev proc sys run; do mount --bind "/$fs" "$sysroot/$fs"; done  # not --rbind: submounts stay busy
# The initramfs (built on the host) already carries lvm2's hook, which activates the root VG.
chroot "$sysroot" grub-install --target=i386-pc "$target"
chroot "$sysroot" update-grub
grep -q "^\s*linux16\s.*root=/dev/mapper/$vg-root" "$sysroot/boot/grub/grub.cfg"  # 10_linux-linux16 (the recipe)
grep -q "^\s*initrd16\s" "$sysroot/boot/grub/grub.cfg"

sync
umount -R "$sysroot"
vgchange -an "$vg"
