//go:build !unix

package main

import "time"

// processCPU is 0 where getrusage does not exist, so the report's CPU per
// request reads 0 there; the benchmark is meant for Linux, where it also
// reads the PostgreSQL backends' CPU from /proc.
func processCPU() time.Duration { return 0 }
