package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The portal's answers, as the fleet package renders them.
var answers = map[string]string{
	"/api/kcare/nagios/all-fine":     "All 4 servers are up to date|uptodate=4;outofdate=0;unsupported=0;inactive=0\n",
	"/api/kcare/nagios/outofdate":    "3 machines are OUTOFDATE!|uptodate=1;outofdate=3;unsupported=0;inactive=0\ndb1 (192.0.2.20) is OUTOFDATE\ndb2 (192.0.2.21) is OUTOFDATE\nweb2 (192.0.2.11) is OUTOFDATE\n",
	"/api/kcare/nagios/unsupported":  "1 machines are UNSUPPORTED!|uptodate=1;outofdate=0;unsupported=1;inactive=0\nold1 (192.0.2.30) is UNSUPPORTED\n",
	"/api/kcare/nagios/inactive":     "1 machines are INACTIVE!|uptodate=1;outofdate=0;unsupported=0;inactive=1\ngone (192.0.2.40) is INACTIVE\n",
	"/api/kcare/nagios-res/acme/t0k": "All 2 servers are up to date|uptodate=2;outofdate=0;unsupported=0;inactive=0\n",
	"/api/kcare/nagios/garbage":      "<html>oops</html>\n",
}

func portal(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/kcare/nagios/slow":
			time.Sleep(3 * time.Second)
		case "/api/kcare/nagios/nokey":
			http.Error(w, "Servers not found for key", http.StatusNotFound)
			return
		case "/api/kcare/nagios-res/acme/bad":
			http.Error(w, "Registration token not found for reseller", http.StatusNotFound)
			return
		}
		if a, ok := answers[r.URL.Path]; ok {
			fmt.Fprint(w, a)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCheckKcareGolden(t *testing.T) {
	srv := portal(t)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	oldConf := confPath
	confPath = filepath.Join(t.TempDir(), "kcare.conf")
	defer func() { confPath = oldConf }()
	u := []string{"-u", srv.URL}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"ok", append([]string{"-k", "all-fine"}, u...), OK},
		{"outofdate_default_critical", append([]string{"-k", "outofdate"}, u...), Critical},
		{"outofdate_as_warning", append([]string{"-k", "outofdate", "-c", "", "-w", "o"}, u...), Warning},
		{"outofdate_ignored", append([]string{"-k", "outofdate", "-c", "u", "-w", "i"}, u...), OK},
		{"unsupported_default_warning", append([]string{"-k", "unsupported"}, u...), Warning},
		{"unsupported_critical", append([]string{"-k", "unsupported", "-c", "o,u"}, u...), Critical},
		{"inactive_default_warning", append([]string{"-k", "inactive"}, u...), Warning},
		{"inactive_critical", append([]string{"-k", "inactive", "-c", "i", "-w", ""}, u...), Critical},
		{"reseller", append([]string{"-l", "acme", "--api-token", "t0k"}, u...), OK},
		{"reseller_bad_token", append([]string{"-l", "acme", "--api-token", "bad"}, u...), Unknown},
		{"zabbix_ok", append([]string{"-k", "all-fine", "-z"}, u...), OK},
		{"zabbix_critical", append([]string{"-k", "outofdate", "-z"}, u...), Critical},
		{"zabbix_unknown", append([]string{"-k", "nokey", "-z"}, u...), Unknown},
		{"no_such_key", append([]string{"-k", "nokey"}, u...), Unknown},
		{"bad_answer", append([]string{"-k", "garbage"}, u...), Unknown},
		{"unreachable", []string{"-k", "all-fine", "-u", downURL}, Unknown},
		{"timeout", append([]string{"-k", "slow", "-t", "1"}, u...), Unknown},
		{"no_key", u, Unknown},
		{"bad_threshold", append([]string{"-k", "all-fine", "-c", "x"}, u...), Unknown},
		{"no_url", []string{"-k", "all-fine"}, Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(context.Background(), tt.args, &out, &errb)
			got := strings.ReplaceAll(out.String(), downURL, "URL")
			if strings.HasPrefix(tt.name, "unreachable") {
				// The dial error text is the system's; keep the first words.
				got = got[:strings.Index(got, "portal unreachable")+len("portal unreachable")] + "\n"
			}
			got = fmt.Sprintf("exit %d\n%s", code, got)
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				os.WriteFile(path, []byte(got), 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update): %v", err)
			}
			if code != tt.code || got != string(want) {
				t.Errorf("exit %d (want %d)\n--- got ---\n%s--- want ---\n%s", code, tt.code, got, want)
			}
		})
	}
}
