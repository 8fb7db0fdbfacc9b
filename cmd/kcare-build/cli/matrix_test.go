package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestMatrixUsage(t *testing.T) {
	base := []string{"matrix", "--src", "s", "--kernels", "bookworm-6.1", "--name", "kcare_x", "--level", "1", "--sign-key", "k", "--out", t.TempDir(), "--cache", t.TempDir()}
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"matrix", "--src", "s"}, "kcare-build matrix: --kernels is required\n"},
		{append(append([]string{}, base...), "--level", "0"), "kcare-build matrix: --level must be 1 or more\n"},
		{append(append([]string{}, base...), "--released", "yesterday"), "kcare-build matrix: --released: parsing time \"yesterday\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"yesterday\" as \"2006\"\n"},
		{append(append([]string{}, base...), "--portal", "http://127.0.0.1:1"), "kcare-build matrix: publishing needs a token: --token-file FILE or KCARE_PUBLISH_TOKEN\n"},
	} {
		t.Setenv("KCARE_PUBLISH_TOKEN", "")
		_, stderr, code := run(t, tt.args...)
		if code != ExitUsage || stderr != tt.stderr {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tt.args, code, stderr, ExitUsage, tt.stderr)
		}
	}
}

func TestMatrixReleasesNamed(t *testing.T) {
	// Releases named one by one need no archive.
	got, err := matrixReleases(t.Context(), nil, "6.1.0-57-amd64,6.12.118+deb13-amd64,6.1.0-57-amd64", "")
	if err != nil || strings.Join(got, " ") != "6.1.0-57-amd64 6.12.118+deb13-amd64" {
		t.Errorf("matrixReleases = %q, %v", got, err)
	}
	for _, bad := range []string{"5.15.0-76-generic", "all-sid", ""} {
		if _, err := matrixReleases(t.Context(), nil, bad, ""); err == nil {
			t.Errorf("matrixReleases(%q): no error", bad)
		}
	}
}

func TestMatrixSummary(t *testing.T) {
	var b bytes.Buffer
	writeMatrixSummary(&b, matrixReport{Kernels: []matrixKernel{
		{Release: "6.1.0-57-amd64", Family: "bookworm-6.1", Result: resultPublished, Bundle: "out/6.1.0-57-amd64-1.kcp",
			Seconds: matrixSeconds{Build: 0.93, Pack: 0.1, Test: 2.5}},
		{Release: "6.12.118+deb13-amd64", Family: "trixie-6.12", Result: resultPublished, Bundle: "out/6.12.118+deb13-amd64-1.kcp",
			Seconds: matrixSeconds{Fetch: 7.5, BuildRoot: 33.1, Build: 1.3, Test: 3.6}},
		{Release: "6.1.0-1-amd64", Family: "bookworm-6.1", Result: resultFailed, Step: "fetch", Error: "linux-image-6.1.0-1-amd64-unsigned: not served by the archive"},
	}})
	want := `KERNEL                FAMILY        RESULT     FETCH  BUILDROOT  BUILD  TEST  BUNDLE OR ERROR
6.1.0-57-amd64        bookworm-6.1  published  -      -          0.9s   2.5s  out/6.1.0-57-amd64-1.kcp
6.12.118+deb13-amd64  trixie-6.12   published  7.5s   33.1s      1.3s   3.6s  out/6.12.118+deb13-amd64-1.kcp
6.1.0-1-amd64         bookworm-6.1  failed     -      -          -      -     fetch: linux-image-6.1.0-1-amd64-unsigned: not served by the archive
`
	if b.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestParseGuestTest reads a guest's console as kcare-build test does: the
// report lines among the kernel's, the build-id from its notes.
func TestParseGuestTest(t *testing.T) {
	notes := "040000001400000003000000474e55006a2b4ac77585b8cf102cba771300e573c8489b69"
	console := "[    0.000000] Linux version 6.1.0-57-amd64\r\nrcS: done\r\n" +
		"kcare-test: booted 6.1.0-57-amd64 notes " + notes + " tcg\r\n" +
		"kcare-test: step check before: exit 1\r\n" +
		"kcare-test: step transition: not finished after 5s, tasks not switched: kthreadd[2]\r\n" +
		"kcare-test: log livepatch: enabling patch 'kcare_t'\r\n" +
		"kcare-test: result=fail the transition did not finish within 5s (tasks not switched: kthreadd[2])\r\n"
	res := &testResult{Release: "6.1.0-57-amd64", BuildID: "6a2b4ac77585b8cf102cba771300e573c8489b69"}
	if err := parseGuestTest(console, res); err != nil {
		t.Fatal(err)
	}
	if res.Passed || res.Why != "the transition did not finish within 5s (tasks not switched: kthreadd[2])" ||
		strings.Join(res.Steps, "|") != "booted 6.1.0-57-amd64 (TCG)|check before: exit 1|transition: not finished after 5s, tasks not switched: kthreadd[2]" ||
		strings.Join(res.Livepatch, "|") != "livepatch: enabling patch 'kcare_t'" {
		t.Errorf("parseGuestTest = %+v", res)
	}
	// Another build booted, or no result: errors, never a pass.
	other := &testResult{Release: "6.1.0-57-amd64", BuildID: "0123456789012345678901234567890123456789"}
	if err := parseGuestTest(console, other); err == nil || !strings.Contains(err.Error(), "the guest runs 6.1.0-57-amd64 build-id 6a2b4ac77585b8cf102cba771300e573c8489b69") {
		t.Errorf("a guest of another build: %v", err)
	}
	if err := parseGuestTest("kcare-test: booted 6.1.0-57-amd64 notes "+notes+" tcg\n", res); err == nil {
		t.Error("a console without a result parsed")
	}
}
