package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

func run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func sparseImage(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// fdiskList asks fdisk (the oracle) for the partitions of img, extended
// containers excluded.
func fdiskList(t *testing.T, img string, ss int, isGPT bool) []Partition {
	t.Helper()
	cols := "Device,Start,Sectors,Id"
	if isGPT {
		cols = "Device,Start,Sectors,Type-UUID,UUID,Name"
	}
	out := run(t, "", "fdisk", "-b", strconv.Itoa(ss), "-l", "-o", cols, img)
	lines := strings.Split(out, "\n")
	var res []Partition
	inTable := false
	for _, l := range lines {
		if strings.HasPrefix(l, "Device ") {
			inTable = true
			continue
		}
		if !inTable || strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Fields(l)
		num, err := strconv.Atoi(strings.TrimPrefix(f[0], img))
		if err != nil {
			continue
		}
		start, _ := strconv.ParseInt(f[1], 10, 64)
		n, _ := strconv.ParseInt(f[2], 10, 64)
		p := Partition{Number: num, Start: start * int64(ss), Size: n * int64(ss)}
		if isGPT {
			p.Type = gptTypeName(gpt.Type(f[3]))
			p.GUID = f[4]
			// The name is the rest of the line after the UUID column.
			idx := strings.Index(l, f[4]) + len(f[4])
			p.Name = strings.TrimSpace(l[idx:])
		} else {
			id, _ := strconv.ParseUint(f[3], 16, 8)
			if isExtended(byte(id)) {
				continue
			}
			p.Type = fmt.Sprintf("0x%02x", id)
		}
		res = append(res, p)
	}
	return res
}

func comparable(ps []Partition, mbr bool) []Partition {
	out := make([]Partition, len(ps))
	copy(out, ps)
	if mbr {
		for i := range out {
			out[i].GUID = ""
		}
	}
	return out
}

func TestReadWithTools(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk", "fdisk")
	tests := []struct {
		name  string
		ss    int
		gpt   bool
		build func(t *testing.T, img string)
		want  []string // labels, in order
	}{
		{
			name: "gpt512-sgdisk", ss: 512, gpt: true,
			build: func(t *testing.T, img string) {
				run(t, "", "sgdisk", "-n", "1:2048:+8M", "-t", "1:ef00", "-c", "1:EFI system partition",
					"-n", "2:0:+16M", "-t", "2:0700", "-c", "2:Basic data",
					"-n", "4:0:+8M", "-t", "4:8300", "-c", "4:root/fs ä",
					"-n", "3:0:0", "-t", "3:8300", img)
			},
			want: []string{"EFI system partition", "Basic data", "Linux filesystem", "root_fs ä"},
		},
		{
			name: "gpt4096-fdisk", ss: 4096, gpt: true,
			build: func(t *testing.T, img string) {
				run(t, "g\nn\n\n\n+8M\nt\n1\nn\n\n\n+16M\nt\n2\n11\nn\n\n\n\nx\nn\n2\nmy data\nr\nw\n",
					"fdisk", "-b", "4096", img)
			},
			want: []string{"EFI System", "my data", "Linux filesystem"},
		},
		{
			name: "mbr512-sfdisk", ss: 512,
			build: func(t *testing.T, img string) {
				d := filepath.Base(img)
				script := "label: dos\n" + d + "1: size=8MiB, type=7\n" + d + "2: size=40MiB, type=5\n" +
					d + "5: size=4MiB, type=83\n" + d + "6: size=4MiB, type=b\n" + d + "7: size=4MiB, type=83\n" +
					d + "3: size=4MiB, type=c\n"
				cmd := exec.Command("sfdisk", "-q", d)
				cmd.Dir = filepath.Dir(img)
				cmd.Stdin = strings.NewReader(script)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("sfdisk: %v\n%s", err, out)
				}
			},
			want: []string{"0x07", "0x0c", "0x83", "0x0b", "0x83"},
		},
		{
			name: "mbr4096-fdisk", ss: 4096,
			build: func(t *testing.T, img string) {
				run(t, "o\nn\np\n1\n\n+8M\nt\n7\nn\ne\n2\n\n+40M\nn\nl\n\n+4M\nn\nl\n\n+4M\nt\n6\nb\nn\nl\n\n+4M\nw\n",
					"fdisk", "-b", "4096", img)
			},
			want: []string{"0x07", "0x83", "0x0b", "0x83"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := sparseImage(t, 64<<20)
			tc.build(t, img)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Read(f, 64<<20, tc.ss)
			if err != nil {
				t.Fatal(err)
			}
			want := fdiskList(t, img, tc.ss, tc.gpt)
			if len(want) == 0 {
				t.Fatal("oracle listed no partitions")
			}
			if fmt.Sprint(comparable(got, !tc.gpt)) != fmt.Sprint(comparable(want, !tc.gpt)) {
				t.Fatalf("partitions differ\n got %+v\nwant %+v", got, want)
			}
			var labels []string
			for _, p := range got {
				labels = append(labels, p.Label())
			}
			if fmt.Sprint(labels) != fmt.Sprint(tc.want) {
				t.Errorf("labels = %q, want %q", labels, tc.want)
			}
			if !tc.gpt {
				sig := binary.LittleEndian.Uint32(readAt(t, f, 440, 4))
				for _, p := range got {
					if w := fmt.Sprintf("%08x-%02x", sig, p.Number); p.GUID != w {
						t.Errorf("partition %d GUID %q, want %q", p.Number, p.GUID, w)
					}
				}
			}
			// The wrong sector size still finds the GPT (the other size is tried).
			if tc.gpt {
				other := 4096
				if tc.ss == 4096 {
					other = 512
				}
				got2, err := Read(f, 64<<20, other)
				if err != nil || fmt.Sprint(got2) != fmt.Sprint(got) {
					t.Errorf("Read with sector size %d: %v, %v", other, got2, err)
				}
			}
		})
	}
}

func readAt(t *testing.T, f *os.File, off int64, n int) []byte {
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSuperfloppyAndBlank(t *testing.T) {
	t.Run("blank", func(t *testing.T) {
		got, err := Read(bytes.NewReader(make([]byte, 1<<20)), 1<<20, 512)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("got %v, %v; want empty non-nil slice", got, err)
		}
	})
	t.Run("tiny", func(t *testing.T) {
		got, err := Read(bytes.NewReader(nil), 0, 512)
		if err != nil || len(got) != 0 {
			t.Fatalf("got %v, %v", got, err)
		}
	})
	for _, fat := range []string{"12", "16", "32"} {
		t.Run("fat"+fat, func(t *testing.T) {
			testutil.Need(t, "mkfs.vfat")
			img := sparseImage(t, 64<<20)
			run(t, "", "mkfs.vfat", "-F", fat, img)
			f, _ := os.Open(img)
			defer f.Close()
			got, err := Read(f, 64<<20, 512)
			if err != nil || len(got) != 0 {
				t.Fatalf("got %v, %v; want no partitions", got, err)
			}
		})
	}
}

// testGPTEntry describes one entry for buildGPT.
type testEntry struct {
	index       int
	typ, guid   string
	first, last uint64
	name        string
}

func guidBytes(s string) []byte {
	s = strings.ReplaceAll(s, "-", "")
	b := make([]byte, 16)
	for i := range b {
		v, _ := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		b[i] = byte(v)
	}
	// mixed endian: first three fields little-endian
	b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	b[4], b[5] = b[5], b[4]
	b[6], b[7] = b[7], b[6]
	return b
}

// buildGPT builds a disk image with a protective MBR and both GPT copies.
func buildGPT(ss int, sectors uint64, nEntries int, entries []testEntry) []byte {
	img := make([]byte, sectors*uint64(ss))
	// protective MBR
	img[446+4] = 0xEE
	binary.LittleEndian.PutUint32(img[446+8:], 1)
	binary.LittleEndian.PutUint32(img[446+12:], uint32(sectors-1))
	img[510], img[511] = 0x55, 0xAA
	arr := make([]byte, nEntries*128)
	for _, e := range entries {
		b := arr[(e.index-1)*128:]
		copy(b[0:], guidBytes(e.typ))
		copy(b[16:], guidBytes(e.guid))
		binary.LittleEndian.PutUint64(b[32:], e.first)
		binary.LittleEndian.PutUint64(b[40:], e.last)
		for i, u := range utf16.Encode([]rune(e.name)) {
			binary.LittleEndian.PutUint16(b[56+2*i:], u)
		}
	}
	arrSectors := (uint64(len(arr)) + uint64(ss) - 1) / uint64(ss)
	hdr := func(my, alt, arrLBA uint64) []byte {
		h := make([]byte, 92)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], my)
		binary.LittleEndian.PutUint64(h[32:], alt)
		binary.LittleEndian.PutUint64(h[40:], 2+arrSectors)
		binary.LittleEndian.PutUint64(h[48:], sectors-2-arrSectors)
		copy(h[56:], guidBytes("11111111-2222-3333-4444-555555555555"))
		binary.LittleEndian.PutUint64(h[72:], arrLBA)
		binary.LittleEndian.PutUint32(h[80:], uint32(nEntries))
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(arr))
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
		return h
	}
	copy(img[ss:], hdr(1, sectors-1, 2))
	copy(img[2*ss:], arr)
	copy(img[(sectors-1-arrSectors)*uint64(ss):], arr)
	copy(img[(sectors-1)*uint64(ss):], hdr(sectors-1, 1, sectors-1-arrSectors))
	return img
}

var handEntries = []testEntry{
	{1, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0A0B0C0D-0102-0304-0506-0708090A0B0C", 6, 9, "ESP"},
	{3, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", 10, 20, ""},
	{4, "12345678-1234-1234-1234-123456789ABC", "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEF", 21, 1 << 40, "past end"},
}

func TestHandBuiltGPT(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		img := buildGPT(ss, 40, 8, handEntries)
		want := []Partition{
			{1, 6 * int64(ss), 4 * int64(ss), "EFI System", "ESP", "0A0B0C0D-0102-0304-0506-0708090A0B0C"},
			{3, 10 * int64(ss), 11 * int64(ss), "Linux filesystem", "", "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"},
			{4, 21 * int64(ss), 19 * int64(ss), "12345678-1234-1234-1234-123456789ABC", "past end", "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEF"},
		}
		tests := []struct {
			name    string
			mutate  func(b []byte)
			want    []Partition
			wantErr bool
		}{
			{"intact", func([]byte) {}, want, false},
			{"primary header destroyed", func(b []byte) { b[ss] = 'X' }, want, false},
			{"primary array destroyed", func(b []byte) { b[2*ss+40] ^= 0xFF }, want, false},
			{"both destroyed", func(b []byte) { b[ss] = 'X'; b[len(b)-ss] = 'X' }, nil, true},
			{"huge entry count", func(b []byte) {
				h := b[ss : ss+92]
				binary.LittleEndian.PutUint32(h[80:], 0xFFFFFFFF)
				binary.LittleEndian.PutUint32(h[16:], 0)
				binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
			}, nil, true},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%d/%s", ss, tc.name), func(t *testing.T) {
				b := append([]byte(nil), img...)
				tc.mutate(b)
				got, err := Read(bytes.NewReader(b), int64(len(b)), ss)
				if tc.wantErr {
					if err == nil || !errors.Is(err, volume.ErrCorrupt) {
						t.Fatalf("got %v, %v; want ErrCorrupt", got, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("got  %+v\nwant %+v", got, tc.want)
				}
			})
		}
	}
}

// buildMBR returns a 512-byte MBR/EBR sector with the given entries.
func mbrSector(entries ...[3]uint32) []byte {
	b := make([]byte, 512)
	for i, e := range entries {
		p := b[446+16*i:]
		p[4] = byte(e[0])
		binary.LittleEndian.PutUint32(p[8:], e[1])
		binary.LittleEndian.PutUint32(p[12:], e[2])
	}
	b[510], b[511] = 0x55, 0xAA
	return b
}

func TestHandBuiltMBR(t *testing.T) {
	const sectors = 1000
	tests := []struct {
		name  string
		ss    int
		build func(img []byte, ss int)
		want  string
	}{
		{"chain", 512, func(img []byte, ss int) {
			copy(img, mbrSector([3]uint32{0x83, 10, 90}, [3]uint32{0x0F, 100, 400}))
			binary.LittleEndian.PutUint32(img[440:], 0xdeadbeef)
			copy(img[100*ss:], mbrSector([3]uint32{0x07, 10, 40}, [3]uint32{0x05, 100, 100}))
			copy(img[200*ss:], mbrSector([3]uint32{0x0b, 5, 20}))
		}, "[{1 5120 46080 0x83  deadbeef-01} {5 56320 20480 0x07  deadbeef-05} {6 104960 10240 0x0b  deadbeef-06}]"},
		{"4096 chain", 4096, func(img []byte, ss int) {
			copy(img, mbrSector([3]uint32{0x05, 100, 400}))
			copy(img[100*ss:], mbrSector([3]uint32{0x83, 1, 40}))
		}, "[{5 413696 163840 0x83  00000000-05}]"},
		{"ebr loop", 512, func(img []byte, ss int) {
			copy(img, mbrSector([3]uint32{0x05, 100, 400}))
			copy(img[100*ss:], mbrSector([3]uint32{0x83, 1, 10}, [3]uint32{0x05, 100, 1}))
			copy(img[200*ss:], mbrSector([3]uint32{0x83, 1, 10}, [3]uint32{0x05, 100, 1}))
		}, "[{5 51712 5120 0x83  00000000-05} {6 102912 5120 0x83  00000000-06}]"},
		{"past end", 512, func(img []byte, ss int) {
			copy(img, mbrSector([3]uint32{0x83, 900, 400}, [3]uint32{0x83, 2000, 10}))
		}, "[{1 460800 51200 0x83  00000000-01}]"},
		{"bad boot flag is no table", 512, func(img []byte, ss int) {
			copy(img, mbrSector([3]uint32{0x83, 900, 400}))
			img[446] = 0x12
		}, "[]"},
		{"ebr out of disk", 512, func(img []byte, ss int) {
			copy(img, mbrSector([3]uint32{0x05, 5000, 400}))
		}, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := make([]byte, sectors*tc.ss)
			tc.build(img, tc.ss)
			got, err := Read(bytes.NewReader(img), int64(len(img)), tc.ss)
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got); s != tc.want {
				t.Fatalf("got  %s\nwant %s", s, tc.want)
			}
		})
	}
}

func TestLabel(t *testing.T) {
	tests := []struct {
		p    Partition
		want string
	}{
		{Partition{Name: "Basic data", Type: "Microsoft basic data"}, "Basic data"},
		{Partition{Type: "Microsoft basic data"}, "Microsoft basic data"},
		{Partition{Name: "a/b\\c\x01", Type: "x"}, "a_b_c_"},
		{Partition{Name: "  ", Type: "0x07"}, "0x07"},
		{Partition{Name: "..", Type: "0x07"}, "__"},
		{Partition{Number: 3}, "partition3"},
	}
	for _, tc := range tests {
		if got := tc.p.Label(); got != tc.want {
			t.Errorf("%+v.Label() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestBadSectorSize(t *testing.T) {
	for _, ss := range []int{-1, 100, 513, 1 << 20} {
		if _, err := Read(bytes.NewReader(make([]byte, 4096)), 4096, ss); err == nil {
			t.Errorf("sector size %d accepted", ss)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(buildGPT(512, 16, 4, handEntries[:2]))
	img := make([]byte, 8192)
	copy(img, mbrSector([3]uint32{0x83, 1, 2}, [3]uint32{0x05, 4, 10}))
	copy(img[4*512:], mbrSector([3]uint32{0x07, 1, 2}, [3]uint32{0x05, 3, 2}))
	f.Add(img)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ss := range []int{512, 4096} {
			parts, err := Read(bytes.NewReader(data), int64(len(data)), ss)
			if err != nil {
				continue
			}
			for _, p := range parts {
				if p.Start < 0 || p.Size <= 0 || p.Start+p.Size > int64(len(data)) {
					t.Fatalf("partition %+v outside disk of %d bytes", p, len(data))
				}
				_ = p.Label()
			}
		}
	})
}
