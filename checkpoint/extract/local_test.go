package extract

import "testing"

func TestSafeName(t *testing.T) {
	for name, want := range map[string]bool{"a": true, "a b.txt": true, "日本": true, "..": false, ".": false, "": false, "a/b": false, "a\x00": false, "...": true} {
		if safeName(name) != want {
			t.Errorf("safeName(%q) = %v", name, !want)
		}
	}
}
