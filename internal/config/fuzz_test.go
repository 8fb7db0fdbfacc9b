package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.conf"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "271126", uint8(0))
	}
	f.Add([]byte(typical), `it's "$5" # cheap`, uint8(3))
	f.Add([]byte("NOTE=a'b c'\"d\\\"e\"\\ f # x\r\n"), "a\\b`c`", uint8(0))
	f.Add([]byte("export PREFIX=test"), "", uint8(1))
	f.Add([]byte("A='x\n"), "\r", uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, value string, pick uint8) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		out := file.Bytes()
		if !bytes.Equal(out, data) {
			t.Fatalf("Bytes() = %q, want the input %q", out, data)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Bytes()) of %q: %v", out, err)
		}
		keys := file.Keys()
		for _, k := range keys {
			want, _ := file.Get(k)
			if got, ok := again.Get(k); !ok || got != want {
				t.Fatalf("re-Parse Get(%q) = %q, %v; want %q", k, got, ok, want)
			}
		}

		if !ValidValue(value) {
			return
		}
		// Set an existing key when there is one, else a new key.
		key := "FUZZ_NEW_KEY"
		if len(keys) > 0 && int(pick) < 2*len(keys) {
			key = keys[int(pick)%len(keys)]
		}
		file.Set(key, value)
		edited, err := Parse(file.Bytes())
		if err != nil {
			t.Fatalf("Parse after Set(%q, %q) of %q: %v", key, value, file.Bytes(), err)
		}
		if got, ok := edited.Get(key); !ok || got != value {
			t.Fatalf("after Set(%q, %q): Get = %q, %v; bytes %q", key, value, got, ok, file.Bytes())
		}
		for _, k := range keys {
			if k == key {
				continue
			}
			want, _ := again.Get(k)
			if got, _ := edited.Get(k); got != want {
				t.Fatalf("after Set(%q, %q): Get(%q) = %q, want it unchanged %q", key, value, k, got, want)
			}
		}
	})
}
