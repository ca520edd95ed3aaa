package wire

// Bounds of the volumes of one CreateContainer request (Volume): the host-provided files
// travel in the request, so they stay well inside a ttrpc message (4 MiB), and the guest
// keeps them in memory. Kubernetes caps a ConfigMap or Secret at 1 MiB.
const (
	// MaxVolumeFileBytes bounds one file's data.
	MaxVolumeFileBytes = 1 << 20
	// MaxVolumeBytes bounds the data of all files of a container's volumes.
	MaxVolumeBytes = 2 << 20
	// MaxVolumeEntries bounds the files and directories of a container's volumes.
	MaxVolumeEntries = 1024
	// MaxVolumes bounds the volumes of a container.
	MaxVolumes = 64
	// MaxReadVolumeBytes bounds what ReadVolume returns: the kubelet keeps 4 KiB of a
	// termination message.
	MaxReadVolumeBytes = 4096
	// MaxEmptyDirName bounds an emptyDir's name.
	MaxEmptyDirName = 4096
)
