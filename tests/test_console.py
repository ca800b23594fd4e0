"""What the lab reads from a guest's serial console: where a boot is, and boots that cannot go on."""

from lab.virt import console

GRUB_BOOT = ("\x1b[2JSeaBIOS (version 1.16.2)\nBooting from Hard Disk...\nGNU GRUB  version 2.06\n"
             "[    0.000000] Linux version 6.1.0-57-cloud-amd64\nBegin: Loading essential drivers ... done.\n")


def test_the_phase_is_the_latest_milestone_with_the_last_line() -> None:
    assert console.boot_phase(GRUB_BOOT) == "initramfs; last console line: 'Begin: Loading essential drivers ... done.'"
    colored = GRUB_BOOT + "\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m - OpenBSD Secure Shell.\n"
    assert console.boot_phase(colored).startswith("sshd and login;")
    assert console.boot_phase("[  OK  ] Reached target reboot.target - System Reboot.\n").startswith("still shutting")
    assert console.boot_phase("") == "nothing yet (no console output since the boot began)"


def test_a_stalled_boot_names_the_kernels_first_report_under_its_backtrace() -> None:
    stalled = GRUB_BOOT + ("[  215.9] watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [systemd-udevd:92]\n"
                           + "[  215.9]  ? do_syscall_64+0x69/0x90\n" * 30 + "[  240.7]  </TASK>\n")
    assert console.boot_phase(stalled) == ("initramfs; last console line: '[  240.7]  </TASK>'; the kernel reported: "
                                           "'watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [systemd-udevd:92]'")
    assert "the kernel reported" not in console.boot_phase(GRUB_BOOT)


def test_a_reboot_has_begun_once_firmware_or_a_kernel_shows() -> None:
    assert not console.booting("[  OK  ] Stopped ssh.service - OpenBSD Secure Shell server.\n")
    assert console.booting("reboot: Restarting system\nSeaBIOS (version 1.16.2)\n")
    assert console.booting("[    0.000000] Linux version 6.1.0-57-cloud-amd64\n")


def test_sshd_state_reads_systemds_status_lines_of_the_boot() -> None:
    kernel = "[    0.000000] Linux version 6.1.0-57-cloud-amd64\n"
    shutdown = "[  OK  ] Stopped ssh.service - OpenBSD Secure Shell server.\nreboot: Restarting system\n"
    assert console.sshd_state("reboot: Restarting system\nSeaBIOS (version 1.16.2)\n" + kernel) == "unknown"
    assert console.sshd_state(shutdown + "SeaBIOS (version 1.16.2)\n" + kernel) == "pending"  # a reboot's
    pending = kernel + "[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mnetwork.target\x1b[0m\n"
    assert console.sshd_state(pending) == "pending"
    assert console.sshd_state(pending + "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m - "
                              "OpenBSD Secure Shell server.\n") == "started"
    assert console.sshd_state(kernel + "[  OK  ] Started OpenSSH server daemon.\n") == "started"  # CentOS 7
    assert console.sshd_state("") == "unknown"  # a restored guest's console says nothing
    # lab-ostree under load: the getty took the console before ssh.service started, and systemd wrote no
    # status line after it (the lab waited out its 300 s grace before probing)
    getty = ("[  OK  ] Started serial-getty@ttyS0.service - Serial Getty on ttyS0.\n"
             "         Starting ssh.service - OpenBSD Secure Shell server...\n\nDebian GNU/Linux 12 vm1 ttyS0\n\n")
    assert console.sshd_state(pending + getty) == "pending"
    assert console.sshd_state(pending + getty + "vm1 login: ") == "unknown"


def test_dead_ends_are_recognised() -> None:
    assert console.dead_end("Boot failed: not a bootable disk\nNo bootable device.\n") == "No bootable device."
    assert console.dead_end("You are in emergency mode. After logging in, ...") is not None
    assert console.dead_end("(initramfs) Dropping to a shell!") == "Dropping to a shell!"
    assert console.dead_end(GRUB_BOOT) is None
