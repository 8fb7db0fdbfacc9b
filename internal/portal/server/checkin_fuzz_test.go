package server

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/textline"
)

const goodCheckIn = `{"hostname":"web1","release":"6.1.0-56-amd64","build_id":"5f2c3b0d9d2e5a2d1b7f7d1c0a9e8b7c6d5e4f30",` +
	`"kernel_id":"02088a120bf0ab256348fc6f756085ab64f70cd0","level":2,"effective_release":"6.1.0-56.kcare2-amd64",` +
	`"result":"ok","agent_version":"0.1.0","tags":"env:prod;role:web"}`

// TestDecodeCheckInErrors: a bad field is an apitype.ErrBadField naming it; a
// body that is not one check-in object is not.
func TestDecodeCheckInErrors(t *testing.T) {
	if _, err := decodeCheckIn(strings.NewReader(goodCheckIn)); err != nil {
		t.Fatalf("good check-in: %v", err)
	}
	bad := strings.Replace(goodCheckIn, `"web1"`, `"evil\nfake|x=1"`, 1)
	if _, err := decodeCheckIn(strings.NewReader(bad)); !errors.Is(err, apitype.ErrBadField) || err.Error() != "bad-hostname" {
		t.Errorf("forged hostname: %v, want apitype.ErrBadField bad-hostname", err)
	}
	for _, body := range []string{goodCheckIn + goodCheckIn, `{"hostname":"web1","x":1}`, `[]`, ``} {
		if _, err := decodeCheckIn(strings.NewReader(body)); err == nil || errors.Is(err, apitype.ErrBadField) {
			t.Errorf("decodeCheckIn(%.40q) = %v; want a decoding error", body, err)
		}
	}
	long := strings.Replace(goodCheckIn, `"result":"ok"`, `"result":"`+strings.Repeat("é", 600)+`"`, 1)
	ci, err := decodeCheckIn(strings.NewReader(long))
	if err != nil || len(ci.Result) != 1000 || ci.Result != strings.Repeat("é", 500) {
		t.Errorf("a 1200-byte result: %v, kept %d bytes; want the first 1000 on a character boundary", err, len(ci.Result))
	}
}

// FuzzDecodeCheckIn: whatever an agent sends, a check-in that is accepted
// holds no field that could break a line or a Nagios report (only the
// result may hold newlines and tabs), and encodes back to itself.
func FuzzDecodeCheckIn(f *testing.F) {
	f.Add(goodCheckIn)
	f.Add(`{"hostname":"evil\nfake (192.0.2.99) is OUTOFDATE|outofdate=99"}`)
	f.Add(`{"result":"load failed\nunload: busy\t(retried)","level":0}`)
	f.Add(`{"tags":null}{}`)
	f.Fuzz(func(t *testing.T, body string) {
		ci, err := decodeCheckIn(strings.NewReader(body))
		if err != nil {
			return
		}
		fields := []string{ci.Hostname, ci.Release, ci.BuildID, ci.KernelID, ci.EffectiveRelease, ci.AgentVersion}
		if ci.Tags != nil {
			fields = append(fields, *ci.Tags)
		}
		for _, v := range fields[:6] {
			if textline.Escape(v) != v {
				t.Fatalf("accepted %q: field %q needs escaping", body, v)
			}
		}
		for _, v := range append(fields, ci.Result) {
			if strings.ContainsAny(v, "\r\x00\x1b") {
				t.Fatalf("accepted %q: field %q holds a control character", body, v)
			}
		}
		if ci.Level < 0 || ci.Level > apitype.MaxLevel || len(ci.Result) > apitype.MaxResultLen {
			t.Fatalf("accepted %q: level %d, result of %d bytes", body, ci.Level, len(ci.Result))
		}
		b, err := json.Marshal(ci)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeCheckIn(strings.NewReader(string(b)))
		if err != nil || !reflect.DeepEqual(again, ci) {
			t.Fatalf("accepted %q, but its encoding %s decodes to %+v, %v", body, b, again, err)
		}
	})
}
