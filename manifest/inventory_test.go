package manifest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// An inventory reads back as written; a file that is not what the reference says (edited,
// truncated, another count) is refused, naming the file.
func TestInventory(t *testing.T) {
	dir := t.TempDir()
	entries := []Entry{
		{Path: "/", Type: "dir", Mode: "0755", Size: 4096},
		{Path: "/bin", Type: "symlink", Mode: "0777", Size: 7, Target: "usr/bin"},
		{Path: "/usr/bin/su", Type: "file", Mode: "4755", Size: 55, SHA256: strings.Repeat("a", 64)},
	}
	ref, err := WriteInventory(filepath.Join(dir, InventoryFile), entries)
	if err != nil {
		t.Fatal(err)
	}
	if ref.File != InventoryFile || ref.Entries != 3 || len(ref.SHA256) != 64 {
		t.Errorf("ref = %+v", ref)
	}
	got, err := ReadInventory(dir, ref)
	if err != nil || !reflect.DeepEqual(got, entries) {
		t.Fatalf("ReadInventory = %+v, %v", got, err)
	}
	for name, bad := range map[string]InventoryRef{
		"another hash":  {File: ref.File, SHA256: strings.Repeat("0", 64), Entries: 3},
		"another count": {File: ref.File, SHA256: ref.SHA256, Entries: 4},
		"a path":        {File: "../" + ref.File, SHA256: ref.SHA256, Entries: 3},
		"missing":       {File: "none.jsonl.zst", SHA256: ref.SHA256, Entries: 3},
	} {
		if _, err := ReadInventory(dir, bad); err == nil {
			t.Errorf("%s: ReadInventory succeeded", name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, InventoryFile), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadInventory(dir, ref); err == nil || !strings.Contains(err.Error(), "changed or damaged") {
		t.Errorf("an edited inventory: %v", err)
	}
}
