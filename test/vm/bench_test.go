package vm_test

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kcare/kcare/test/vm/qemu"
)

// BenchmarkApplyOverhead measures, inside the guest, what kcarectl --apply
// adds on top of a bare finit_module and transition wait of the same
// module, and where its time goes (see test/vm/applybench). b.N is the
// number of rounds of each. With -outputdir, a CPU profile of the apply
// in process goes there, apply.prof, beside the applybench binary it was
// taken of, for go tool pprof.
//
//	go test -run '^$' -bench ApplyOverhead -benchtime 20x -outputdir /tmp/apply ./test/vm/
//	go tool pprof -top /tmp/apply/applybench /tmp/apply/apply.prof
func BenchmarkApplyOverhead(b *testing.B) {
	f := requireVM(b)
	vm := startVM(b, f, []qemu.Share{{Tag: "host", HostDir: f.Dir, GuestPath: "/mnt/host"}}, false)
	r, err := vm.Shell(b.Context(), "cp /mnt/host/l1.kcp /mnt/host/l1.kcp.sig /mnt/host/kcare_test_l1.ko /tmp/ && "+
		"applybench -bundle /tmp/l1.kcp -module /tmp/kcare_test_l1.ko -rounds "+strconv.Itoa(b.N)+" -cpuprofile /mnt/host/apply.prof")
	if err != nil || r.Exit != 0 {
		b.Fatalf("applybench: %v exit %d\n%s%s", err, r.Exit, r.Stdout, r.Stderr)
	}
	b.StopTimer()
	sc := bufio.NewScanner(strings.NewReader(r.Stdout))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k == "rounds" {
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("applybench output %q: %v", sc.Text(), err)
		}
		b.ReportMetric(x, k)
	}
	b.ReportMetric(0, "ns/op")
	if dir := flag.Lookup("test.outputdir").Value.String(); dir != "" {
		for _, name := range []string{"apply.prof", "applybench"} {
			data, err := os.ReadFile(f.Path(name))
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
				b.Fatal(err)
			}
		}
	}
}
