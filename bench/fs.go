package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// tmpfsDir is a directory in memory to write results to, or "" when the machine has none.
func tmpfsDir() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access("/dev/shm", unix.W_OK) == nil {
		return "/dev/shm"
	}
	return ""
}

// fsName says which filesystem holds dir, for the report: "ext4 (/tmp)".
func fsName(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return dir
	}
	name := map[int64]string{unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
		unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", 0x2fc12fc1: "zfs", unix.NFS_SUPER_MAGIC: "nfs"}[int64(st.Type)]
	if name == "" {
		name = fmt.Sprintf("filesystem 0x%x", st.Type)
	}
	return fmt.Sprintf("%s (%s)", name, dir)
}
