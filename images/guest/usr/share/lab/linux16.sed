# GRUB menu entries through linux16/initrd16 (the BIOS real-mode entry) in place of linux/initrd: the filter
# of lab-atomic's 10_linux-linux16 and lab-ostree's 15_ostree-linux16 (their recipes say why).
s/^([[:space:]]*)linux([[:space:]])/\1linux16\2/
s/^([[:space:]]*)initrd([[:space:]])/\1initrd16\2/
