package source

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const waitingMsg = "waiting for another build fetching the same file"

func TestFetchConcurrentGoroutines(t *testing.T) {
	// The first fetcher's download is held at the server until every other fetcher is known to
	// be waiting on the lock, so the test proves they waited rather than came late.
	data, sum := payload(128 << 10)
	pins := []struct{ name, pin string }{{"sha256", sum}, {"sha512", "sha512:" + sum512Of(data)}}
	for _, p := range pins {
		t.Run(p.name, func(t *testing.T) { fetchConcurrently(t, data, sum, p.pin) })
	}
}

func fetchConcurrently(t *testing.T, data []byte, sum, pin string) {
	const n = 4
	release := make(chan struct{})
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		<-release
		serveFile(w, r, data)
	})
	dir := t.TempDir()
	waiting := make(chan struct{}, n)
	in := Input{URL: srv.URL + "/img", SHA256: pin}

	type result struct {
		path string
		err  error
	}
	results := make(chan result, n)
	for range n {
		// One Fetcher each, as separate builds would have: only the cache directory is shared.
		logger, _ := testLogger(t)
		logger = slog.New(notifyHandler{logger.Handler(), waitingMsg, waiting})
		f, err := New(dir, WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			p, err := f.Fetch(t.Context(), in)
			results <- result{p, err}
		}()
	}
	timeout := time.After(30 * time.Second)
	for range n - 1 {
		select {
		case <-waiting:
		case <-timeout:
			close(release)
			t.Fatalf("fetchers did not wait for the lock; the server got %d requests", srv.requests())
		}
	}
	close(release)

	var paths []string
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		paths = append(paths, r.path)
	}
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Errorf("fetchers got different paths: %q", paths)
		}
	}
	if got, _ := os.ReadFile(paths[0]); sumOf(got) != sum {
		t.Errorf("cached file sha256 %s, want %s", sumOf(got), sum)
	}
	if r := srv.requests(); r != 1 {
		t.Errorf("server got %d requests from %d concurrent fetchers, want 1", r, n)
	}
}

// The helper process: TestMain runs it instead of the tests when the test binary is re-executed
// by TestFetchConcurrentProcesses.
const helperEnv = "INGOT_SOURCE_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "fetch" {
		os.Exit(helperFetch())
	}
	os.Exit(m.Run())
}

func helperFetch() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	f, err := New(os.Getenv("HELPER_CACHE"), WithLogger(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	path, err := f.Fetch(context.Background(), Input{URL: os.Getenv("HELPER_URL"), SHA256: os.Getenv("HELPER_SHA256")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(path)
	return 0
}

func TestFetchConcurrentProcesses(t *testing.T) {
	data, sum := payload(128 << 10)
	requested := make(chan struct{}, 2)
	release := make(chan struct{})
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		requested <- struct{}{}
		<-release
		serveFile(w, r, data)
	})
	dir := t.TempDir()
	start := func() (*exec.Cmd, *strings.Builder, *bufio.Scanner) {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=fetch", "HELPER_CACHE="+dir,
			"HELPER_URL="+srv.URL+"/img", "HELPER_SHA256="+sum)
		out := &strings.Builder{}
		cmd.Stdout = out
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out, bufio.NewScanner(stderr)
	}

	first, out1, errs1 := start()
	<-requested // the first process is downloading, and holds the lock
	second, out2, errs2 := start()
	lines2 := make(chan string)
	go func() {
		defer close(lines2)
		for errs2.Scan() {
			lines2 <- errs2.Text()
		}
	}()
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case line, ok := <-lines2:
			if !ok {
				close(release)
				t.Fatal("second process ended without waiting for the lock")
			}
			t.Log("second:", line)
			if strings.Contains(line, waitingMsg) {
				break wait
			}
		case <-requested:
			close(release)
			t.Fatal("second process sent a request instead of waiting for the lock")
		case <-timeout:
			close(release)
			t.Fatal("second process did not report waiting for the lock in 30s")
		}
	}
	close(release)
	for errs1.Scan() {
		t.Log("first:", errs1.Text())
	}
	for line := range lines2 {
		t.Log("second:", line)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first process: %v", err)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("second process: %v", err)
	}
	p1, p2 := strings.TrimSpace(out1.String()), strings.TrimSpace(out2.String())
	if p1 == "" || p1 != p2 {
		t.Errorf("processes printed %q and %q, want the same cache path", p1, p2)
	}
	if got, _ := os.ReadFile(p1); sumOf(got) != sum {
		t.Errorf("cached file sha256 %s, want %s", sumOf(got), sum)
	}
	if r := srv.requests(); r != 1 {
		t.Errorf("server got %d requests from two processes, want 1", r)
	}
}
