package main

import (
	"runtime"
	"testing"
)

func TestOneProc_OneProcessorUnlessTheEnvironmentSays(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(2)
	oneProc()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS %d without the variable, want 1", got)
	}

	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	oneProc()
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("GOMAXPROCS %d with GOMAXPROCS=2 set, want 2 (the operator's word)", got)
	}
}
