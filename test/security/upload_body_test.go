package security

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// zeros is n zero bytes, made as they are read.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), z.n)]
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// uploadLimit is the peak RSS eportal may reach while refusing the
// unauthenticated uploads: what it has after start (the dummy password
// hash, 64 MiB) and little more.
const uploadLimit = 256 << 20

// TestUploadUnauthenticatedMemory: 12 parallel unauthenticated 64 MiB
// patch uploads, each from its own address, are answered 401 without
// being spooled: eportal's TMPDIR stays empty and its peak RSS under
// 256 MiB.
func TestUploadUnauthenticatedMemory(t *testing.T) {
	tmp := t.TempDir()
	p := startWebPortal(t, "TMPDIR="+tmp)
	watch := watchRSS(p.cmd.Process, uploadLimit)
	// What eportal spools, looked at while the uploads run.
	var spooledMu sync.Mutex
	spooled := 0
	stopLooking := make(chan struct{})
	looked := make(chan struct{})
	go func() {
		defer close(looked)
		for {
			if ents, err := os.ReadDir(tmp); err == nil {
				spooledMu.Lock()
				spooled = max(spooled, len(ents))
				spooledMu.Unlock()
			}
			select {
			case <-stopLooking:
				return
			case <-time.After(rssPoll):
			}
		}
	}()
	const n, size = 12, 64 << 20
	codes := make([]string, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			const boundary = "kcare-attack"
			head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"l1.kcp\"\r\n\r\n"
			tail := "\r\n--" + boundary + "--\r\n"
			body := io.MultiReader(strings.NewReader(head), &zeros{n: size}, strings.NewReader(tail))
			req, _ := http.NewRequestWithContext(t.Context(), "POST", p.url+"/admin/patches", body)
			req.ContentLength = int64(len(head) + size + len(tail))
			req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
			resp, err := clientFrom(fmt.Sprintf("127.0.0.%d", i+2)).Do(req)
			if err != nil {
				codes[i] = err.Error()
				return
			}
			resp.Body.Close()
			codes[i] = resp.Status
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(stopLooking)
	<-looked
	peak, over := watch.end()
	if over {
		t.Fatalf("eportal's peak RSS passed %d MiB during %d unauthenticated uploads (VmHWM %d KiB); it was stopped", uploadLimit>>20, n, peak>>10)
	}
	for i, c := range codes {
		if c != "401 Unauthorized" {
			t.Errorf("unauthenticated upload %d: %s, want 401 Unauthorized", i, c)
		}
	}
	if spooled != 0 {
		t.Errorf("eportal's TMPDIR held up to %d files during the uploads, want none", spooled)
	}
	t.Logf("%d unauthenticated 64 MiB uploads answered in %s; eportal VmHWM %d MiB", n, took.Round(time.Millisecond), peak>>20)
}
