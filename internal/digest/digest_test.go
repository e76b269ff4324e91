package digest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var last int64 = -1
			sum, n, err := File(context.Background(), p, func(done, total int64) {
				if total != int64(len(tt.content)) {
					t.Errorf("total %d, want %d", total, len(tt.content))
				}
				last = done
			})
			if err != nil || sum != tt.want || n != int64(len(tt.content)) {
				t.Errorf("File = %s, %d, %v; want %s, %d", sum, n, err, tt.want, len(tt.content))
			}
			if n > 0 && last != n {
				t.Errorf("last report %d, want %d", last, n)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := File(ctx, filepath.Join(dir, "abc"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled hash: %v", err)
	}
	if _, _, err := File(context.Background(), filepath.Join(dir, "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}
