//go:build !unix

package main

import (
	"io/fs"
	"os"
)

// Without O_NOFOLLOW and O_NONBLOCK, the Lstat before opening is what keeps
// a link or a special file out; Windows has no FIFOs or devices in its file
// system, and creating a link there needs privileges.
const (
	openFlags    = 0
	openNoFollow = 0
)

// keepOwner does nothing where files have no Unix owner.
func keepOwner(*os.File, fs.FileInfo) {}

// syncDir does nothing where a directory cannot be opened to sync it;
// NTFS journals metadata changes such as the rename.
func syncDir(string) error { return nil }
