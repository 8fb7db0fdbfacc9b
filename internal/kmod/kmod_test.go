package kmod

import (
	"strings"
	"testing"
)

func TestParseModinfo(t *testing.T) {
	tests := []struct {
		name, data           string
		wantName, wantMagic  string
		wantRelease          string
		wantLivepatch, isErr bool
	}{
		{
			name:     "debian_livepatch",
			data:     "livepatch=Y\x00description=kcare end-to-end test fixture\x00license=GPL\x00depends=\x00retpoline=Y\x00name=kcare_test_l1\x00vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions \x00",
			wantName: "kcare_test_l1", wantMagic: "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
			wantRelease: "6.1.0-56-amd64", wantLivepatch: true,
		},
		{
			name:     "ubuntu_plain",
			data:     "\x00\x00name=e1000\x00vermagic=5.15.0-76-generic SMP mod_unload modversions \x00",
			wantName: "e1000", wantMagic: "5.15.0-76-generic SMP mod_unload modversions ", wantRelease: "5.15.0-76-generic",
		},
		{name: "no_vermagic", data: "name=x\x00", isErr: true},
		{name: "garbage", data: "name=x\x00junk\x00", isErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseModinfo([]byte(tt.data))
			if tt.isErr {
				if err == nil {
					t.Fatalf("ParseModinfo = %+v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseModinfo: %v", err)
			}
			if got.Name != tt.wantName || got.Vermagic != tt.wantMagic || got.Livepatch != tt.wantLivepatch || got.Release() != tt.wantRelease {
				t.Errorf("got name=%q vermagic=%q livepatch=%v release=%q, want %q %q %v %q",
					got.Name, got.Vermagic, got.Livepatch, got.Release(), tt.wantName, tt.wantMagic, tt.wantLivepatch, tt.wantRelease)
			}
		})
	}
}

func TestReadInfoRejectsNonModule(t *testing.T) {
	if _, err := ReadInfo([]byte("not an elf file at all")); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("ReadInfo(garbage) error = %v, want not an ELF", err)
	}
}
