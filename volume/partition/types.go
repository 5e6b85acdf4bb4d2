package partition

import (
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// gptTypeNames names common GPT partition types the way util-linux does.
var gptTypeNames = map[gpt.Type]string{
	gpt.EFISystemPartition:       "EFI System",
	gpt.MBRPartitionScheme:       "MBR partition scheme",
	gpt.BIOSBoot:                 "BIOS boot",
	gpt.MicrosoftReserved:        "Microsoft reserved",
	gpt.MicrosoftBasicData:       "Microsoft basic data",
	gpt.MicrosoftLDMMetadata:     "Microsoft LDM metadata",
	gpt.MicrosoftLDMData:         "Microsoft LDM data",
	gpt.MicrosoftWindowsRecovery: "Windows recovery environment",
	gpt.MicrosoftStorageSpaces:   "Microsoft Storage Spaces",
	gpt.LinuxSwap:                "Linux swap",
	gpt.LinuxFilesystem:          "Linux filesystem",
	gpt.LinuxServerData:          "Linux server data",
	gpt.LinuxRootX86:             "Linux root (x86)",
	gpt.LinuxRootX86_64:          "Linux root (x86-64)",
	gpt.LinuxRootArm:             "Linux root (ARM)",
	gpt.LinuxRootArm64:           "Linux root (ARM-64)",
	gpt.LinuxRootIA64:            "Linux root (IA-64)",
	gpt.LinuxReserved:            "Linux reserved",
	gpt.LinuxHome:                "Linux home",
	gpt.LinuxRAID:                "Linux RAID",
	gpt.LinuxExtendedBoot:        "Linux extended boot",
	gpt.LinuxLVM:                 "Linux LVM",
	gpt.LinuxDMCrypt:             "Linux dm-crypt",
	gpt.LinuxLUKS:                "Linux LUKS",
	gpt.FreeBSDData:              "FreeBSD data",
	gpt.FreeBSDBoot:              "FreeBSD boot",
	gpt.FreeBSDSwap:              "FreeBSD swap",
	gpt.FreeBSDUFS:               "FreeBSD UFS",
	gpt.FreeBSDZFS:               "FreeBSD ZFS",
	gpt.AppleHFS:                 "Apple HFS/HFS+",
	gpt.AppleAPFS:                "Apple APFS",
	gpt.SolarisUsrAndAppleZFS:    "Solaris /usr & Apple ZFS",
	gpt.VMwareVMFS:               "VMware VMFS",
}

// gptTypeName returns the name of a GPT type GUID, or the GUID itself.
func gptTypeName(t gpt.Type) string {
	u := gpt.Type(strings.ToUpper(string(t)))
	if n, ok := gptTypeNames[u]; ok {
		return n
	}
	return string(u)
}
