package lvm

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
)

// VG is an assembled volume group.
type VG struct {
	Name string
	// UUID is the VG's identifier, with dashes. Two VGs may share a name
	// (disks of different machines); the UUID tells them apart.
	UUID  string
	Seqno uint64
	// ExtentSize is the size of a physical extent in bytes.
	ExtentSize uint64
	// Status is the VG's status list ("RESIZEABLE", "READ", "WRITE", ...).
	Status []string
	// PVs are the VG's physical volumes in metadata order; missing ones
	// have a nil PV.
	PVs []*VGPV
	// LVs are the user-visible logical volumes, sorted by name. Those that
	// cannot be read have a Reason.
	LVs []*LV
	// HiddenLVs are the internal LVs (pool metadata and data, raid and
	// mirror legs, snapshot descriptors, ...), sorted by name.
	HiddenLVs []*LV
	// Metadata is the metadata copy the VG was built from.
	Metadata *Metadata
	// Warnings describe inconsistencies that did not stop assembly.
	Warnings []string

	all      []*LV // metadata order
	pvByName map[string]*VGPV
	lvByName map[string]*LV
}

// LV returns the LV (visible or hidden) called name, or nil.
func (vg *VG) LV(name string) *LV { return vg.lvByName[name] }

// Assemble groups PVs into volume groups using their metadata. Per VG,
// the metadata copy with the highest seqno among the PVs wins. PVs are
// matched to the VG's metadata by UUID; PVs of a VG that are not given
// leave the LVs that use them without a reader (their Err wraps
// ErrMissingPV) while the other LVs still work. The returned errors
// describe VGs that could not be assembled, missing PVs and PVs without
// usable metadata that no VG claims; they never stop the other VGs.
func Assemble(pvs []*PV) ([]*VG, []error) {
	var errs []error
	byUUID := map[string]*PV{}
	var order []*PV
	for _, pv := range pvs {
		if pv == nil {
			continue
		}
		id := normID(pv.UUID)
		if byUUID[id] != nil {
			errs = append(errs, fmt.Errorf("volume/lvm: PV %s given twice: using the first", pv.UUID))
			continue
		}
		byUUID[id] = pv
		order = append(order, pv)
	}
	// The newest metadata per VG UUID.
	best := map[string]*PV{}
	var vgIDs []string
	for _, pv := range order {
		m := pv.Metadata
		if m == nil {
			continue
		}
		id := normID(m.VGUUID)
		b := best[id]
		switch {
		case b == nil:
			vgIDs = append(vgIDs, id)
			best[id] = pv
		case m.Seqno > b.Metadata.Seqno || m.Seqno == b.Metadata.Seqno && m.Verified && !b.Metadata.Verified:
			best[id] = pv
		}
	}
	claimed := map[*PV]bool{}
	var vgs []*VG
	for _, id := range vgIDs {
		src := best[id]
		vg, err := decodeVG(src.Metadata)
		if err != nil {
			errs = append(errs, within(err, "VG %s (metadata seqno %d from PV %s)", src.Metadata.VGName, src.Metadata.Seqno, src.UUID))
			continue
		}
		for _, w := range src.Warnings {
			vg.Warnings = append(vg.Warnings, "PV "+src.UUID+": "+w)
		}
		for _, p := range vg.PVs {
			pv := byUUID[normID(p.UUID)]
			if slices.Contains(p.Flags, "MISSING") {
				errs = append(errs, fmt.Errorf("volume/lvm: VG %s: PV %s (UUID %s) is flagged MISSING in the metadata: %w", vg.Name, p.Name, p.UUID, ErrMissingPV))
				if pv != nil {
					claimed[pv] = true
				}
				continue
			}
			if pv == nil {
				errs = append(errs, fmt.Errorf("volume/lvm: VG %s: PV %s (UUID %s, last seen as %s): %w", vg.Name, p.Name, p.UUID, p.Device, ErrMissingPV))
				continue
			}
			p.PV = pv
			claimed[pv] = true
			if pv != src && pv.Metadata != nil && normID(pv.Metadata.VGUUID) == id {
				switch {
				case pv.Metadata.Seqno < vg.Seqno:
					vg.Warnings = append(vg.Warnings, fmt.Sprintf("PV %s holds older metadata (seqno %d); using seqno %d", pv.UUID, pv.Metadata.Seqno, vg.Seqno))
				case !bytes.Equal(pv.Metadata.Text, src.Metadata.Text) && pv.Metadata.Verified && src.Metadata.Verified:
					vg.Warnings = append(vg.Warnings, fmt.Sprintf("PV %s holds different metadata with the same seqno %d; using PV %s's", pv.UUID, vg.Seqno, src.UUID))
				}
			}
		}
		vg.resolve()
		vgs = append(vgs, vg)
	}
	for _, pv := range order {
		if claimed[pv] {
			continue
		}
		switch {
		case pv.Metadata != nil:
			errs = append(errs, fmt.Errorf("volume/lvm: PV %s: its metadata names VG %s, whose newest metadata does not list it", pv.UUID, pv.Metadata.VGName))
		case pv.MetadataErr != nil:
			errs = append(errs, within(pv.MetadataErr, "PV %s: no usable metadata", pv.UUID))
		}
	}
	sort.SliceStable(vgs, func(i, j int) bool {
		if vgs[i].Name != vgs[j].Name {
			return vgs[i].Name < vgs[j].Name
		}
		return vgs[i].UUID < vgs[j].UUID
	})
	return vgs, errs
}
