package kimage

import (
	"math/rand"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestTmpHang(t *testing.T) {
	v := testVmlinux()
	seeds := [][]byte{v, fakeBzImage(gzipped(t, v)), fakeBzImage(withSize(zstded(t, v), len(v)))}
	r := rand.New(rand.NewSource(1))
	lim := limits{image: MaxImageSize, vmlinux: 4 << 20}
	deadline := time.Now().Add(60 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		in := append([]byte(nil), seeds[r.Intn(len(seeds))]...)
		for k := r.Intn(8) + 1; k > 0; k-- {
			i := r.Intn(len(in))
			switch r.Intn(3) {
			case 0:
				in[i] = byte(r.Intn(256))
			case 1:
				in[i] ^= 1 << r.Intn(8)
			case 2:
				in[i] = []byte{0, 0xff, 0x7f, 0x80}[r.Intn(4)]
			}
		}
		done := make(chan struct{})
		go func() {
			if got, err := vmlinux(in, lim); err == nil {
				Identify(got)
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			os.WriteFile("/tmp/hang.bin", in, 0o644)
			buf := make([]byte, 1<<20)
			t.Fatalf("hang after %d: %s", n, buf[:runtime.Stack(buf, true)])
		}
		n++
	}
	t.Logf("%d runs", n)
}
