#!/bin/bash
# Assemble lab-ostree on a blank disk; runs as root inside the builder VM (which has ostree).
# usage: lab-ostree-assemble.sh TARGET_DISK ROOTFS_TAR_DISK VG ROOT_SIZE BOOT_SIZE OSNAME REF
set -euxo pipefail
PS4='+ [${SECONDS}s] '  # each traced command with the seconds since the start: where a build's time goes
target=$1 tarball=$2 vg=$3 root_size=$4 boot_size=$5 osname=$6 ref=$7
# The tree is unpacked on the sysroot's own filesystem, so that `ostree commit --consume` can rename
# its files into the repository after checksumming them instead of copying them (ostree's "adopt" path
# for bare repositories); /var's content waits beside it.
sysroot=/mnt/sysroot tree=/mnt/sysroot/lab-tree var=/mnt/sysroot/lab-var

# vda1 /boot, vda2 the LVM physical volume: lab-atomic's layout
parted -s "$target" mklabel msdos \
    mkpart primary ext4 1MiB "$boot_size" set 1 boot on \
    mkpart primary "$boot_size" 100% set 2 lvm on
udevadm settle
boot_part=$target-part1 pv=$target-part2
mkfs.ext4 -q -L boot "$boot_part"
pvcreate -y "$pv"
vgcreate "$vg" "$pv"
lvcreate -y -L "$root_size" -n root "$vg"
mkfs.xfs -q -L root "/dev/$vg/root"
mkdir -p "$sysroot"
mount "/dev/$vg/root" "$sysroot"
mkdir -p "$sysroot/boot"
mount "$boot_part" "$sysroot/boot"

# The Debian tree made into an OSTree tree: /etc shipped as /usr/etc, /var empty (its
# content seeds the stateroot's /var), state directories as symlinks into /var.
mkdir -p "$tree"
tar -xpf "$tarball" --xattrs --xattrs-include='*' --numeric-owner -C "$tree"
mv "$tree/etc" "$tree/usr/etc"
mv "$tree/var" "$var" && mkdir "$tree/var"
find "$tree/dev" "$tree/proc" "$tree/sys" "$tree/run" "$tree/tmp" -mindepth 1 -delete
move_to_var() {  # move_to_var PATH VAR_NAME LINK_TARGET
    mkdir -p "$var/$2"
    cp -a "$tree/$1/." "$var/$2/" && rm -rf "${tree:?}/$1"
    ln -s "$3" "$tree/$1"
}
move_to_var home home var/home
move_to_var root roothome var/roothome
move_to_var opt opt var/opt
move_to_var srv srv var/srv
move_to_var mnt mnt var/mnt
move_to_var usr/local usrlocal ../var/usrlocal
mkdir -p "$var/log/journal"
mkdir "$tree/sysroot" && ln -s sysroot/ostree "$tree/ostree"

ostree admin init-fs "$sysroot"
ostree admin os-init --sysroot="$sysroot" "$osname"
repo=$sysroot/ostree/repo
# No fsync per object while the image is made (one sync at the end); the image's repository keeps
# ostree's default, so the guest's own commits and deploys fsync as on a real host.
ostree config --repo="$repo" set core.fsync false
ostree commit --repo="$repo" --branch="$ref" --subject="lab-ostree 1" --add-metadata-string=version=1 \
    --consume --tree=dir="$tree"
test ! -e "$tree"

# The first deployment, made before GRUB has a config (ostree would run grub-mkconfig
# from the builder otherwise); later deployments inherit its kernel arguments.
ostree admin deploy --sysroot="$sysroot" --os="$osname" \
    --karg="root=/dev/mapper/$vg-root" --karg="rd.lvm.lv=$vg/root" --karg=rw \
    --karg=console=ttyS0,115200 --karg=net.ifnames=0 --karg=apparmor=0 --karg=tsc=reliable --karg=norandmaps "$ref"
deployment=$(echo "$sysroot/ostree/deploy/$osname/deploy/"*.0)
cp -a "$var/." "$sysroot/ostree/deploy/$osname/var/" && rm -rf "$var"
cat > "$deployment/etc/fstab" <<FSTAB
/dev/mapper/$vg-root / xfs defaults 0 0
UUID=$(blkid -s UUID -o value "$boot_part") /boot ext4 defaults 0 2
FSTAB

# GRUB from the deployment itself, its menu made by the deployment's grub-mkconfig
# and 15_ostree, in /boot/loader/ where ostree swaps it on each deploy.
for fs in dev proc sys; do mount --bind "/$fs" "$deployment/$fs"; done
mount --bind "$sysroot/boot" "$deployment/boot"
mount --bind "$sysroot" "$deployment/sysroot"
chroot "$deployment" grub-install --target=i386-pc "$target"
chroot "$deployment" grub-mkconfig -o /boot/loader/grub.cfg
ln -s ../loader/grub.cfg "$sysroot/boot/grub/grub.cfg"
grep "^\s*linux16\s.*ostree=/ostree/boot" "$sysroot/boot/loader/grub.cfg"  # through 15_ostree-linux16 (the recipe)
grep -q "^\s*initrd16\s" "$sysroot/boot/loader/grub.cfg"
ostree admin status --sysroot="$sysroot"
ostree config --repo="$repo" unset core.fsync

sync
umount -R "$deployment/dev" "$deployment/proc" "$deployment/sys" "$deployment/boot" "$deployment/sysroot"
umount -R "$sysroot"
vgchange -an "$vg"
