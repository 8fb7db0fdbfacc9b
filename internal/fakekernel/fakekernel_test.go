package fakekernel

import (
	"testing"

	"github.com/kcare/kcare/internal/kmod"
)

func TestModuleReadsBack(t *testing.T) {
	info, err := kmod.ReadInfo(Module("kcare_test_l1", Release+" SMP preempt mod_unload modversions ", true))
	if err != nil {
		t.Fatalf("ReadInfo: %v", err)
	}
	if info.Name != "kcare_test_l1" || !info.Livepatch || info.Release() != Release {
		t.Errorf("got %+v, want kcare_test_l1 livepatch for %s", info, Release)
	}
}
