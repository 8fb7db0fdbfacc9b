package fleet

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/kcare/kcare/internal/portal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func server(host, ip string, st State) Classified {
	return Classified{Server: store.Server{ID: "id-" + host, Hostname: host, IP: ip}, State: st}
}

// TestNagiosReportGolden covers every mix of states.
func TestNagiosReportGolden(t *testing.T) {
	tests := []struct {
		name string
		cs   []Classified
	}{
		{"all_up_to_date", []Classified{server("web1", "192.0.2.10", UpToDate), server("web2", "192.0.2.11", UpToDate), server("db1", "192.0.2.20", UpToDate), server("db2", "192.0.2.21", UpToDate)}},
		{"empty", nil},
		{"out_of_date", []Classified{server("web1", "192.0.2.10", UpToDate), server("web2", "192.0.2.11", OutOfDate), server("db1", "192.0.2.20", OutOfDate), server("db2", "192.0.2.21", OutOfDate)}},
		{"unsupported", []Classified{server("web1", "192.0.2.10", UpToDate), server("old1", "192.0.2.30", Unsupported)}},
		{"inactive", []Classified{server("web1", "192.0.2.10", UpToDate), server("gone", "192.0.2.40", Inactive)}},
		// A hostname stored before check-ins were validated: a newline and
		// a "|" must not forge a line or perfdata.
		{"forged_hostname", []Classified{server("web1", "192.0.2.10", UpToDate), server("evil\nfake (192.0.2.99) is OUTOFDATE|outofdate=99", "192.0.2.20", OutOfDate),
			server("tab\there\\", "192.0.2.21\r\n", Inactive)}},
		{"mixed", []Classified{server("web1", "192.0.2.10", UpToDate), server("web2", "192.0.2.11", OutOfDate), server("old1", "192.0.2.30", Unsupported), server("gone", "192.0.2.40", Inactive), server("", "192.0.2.50", Inactive)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NagiosReport(tt.cs)
			path := filepath.Join("testdata", "nagios_"+tt.name+".golden")
			if *update {
				os.MkdirAll("testdata", 0o755)
				os.WriteFile(path, []byte(got), 0o644)
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Errorf("report differs from %s:\n--- got ---\n%s--- want ---\n%s", path, got, want)
			}
		})
	}
}
