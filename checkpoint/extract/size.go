package extract

import (
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
)

// Size adds up the data sizes of the regular files at and below loc, for
// a progress bar. Places that cannot be read count as 0.
func Size(loc nav.Loc) int64 {
	if !loc.In {
		switch loc.Node.Kind() {
		case checkpoint.KindFile:
			return loc.Node.Size
		case checkpoint.KindFileSystem:
			return Size(loc.Enter())
		case checkpoint.KindFolder:
			kids, _ := loc.Node.Entries()
			var n int64
			for _, k := range kids {
				n += Size(nav.Loc{Node: k})
			}
			return n
		}
		return 0
	}
	v := loc.Node.FS
	st, err := v.Stat(loc.Ino)
	if err != nil {
		return 0
	}
	if !st.Mode.IsDir() {
		if st.Mode.IsRegular() {
			return st.Size
		}
		return 0
	}
	ents, _ := v.ReadDir(loc.Ino)
	var n int64
	for _, e := range ents {
		n += Size(nav.Loc{Node: loc.Node, In: true, Ino: e.Ino})
	}
	return n
}
