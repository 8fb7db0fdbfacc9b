package mirror

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestBoundedReader(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		err  error
	}{
		{"0123456789", "0123456789", nil},
		{"012345678", "012345678", nil},
		{"0123456789A", "0123456789", errArchiveTooLarge},
	} {
		got, err := io.ReadAll(&boundedReader{r: strings.NewReader(tt.in), left: 10})
		if string(got) != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%q bounded to 10: %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
