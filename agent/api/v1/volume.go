package agentv1

import "confguest/agent/api/v1/wire"

// Bounds of the volumes of one CreateContainer request (Volume), as the agent enforces
// them (wire's constants of the same names say why).
const (
	MaxVolumeFileBytes = wire.MaxVolumeFileBytes // one file's data
	MaxVolumeBytes     = wire.MaxVolumeBytes     // the data of all files of a container's volumes
	MaxVolumeEntries   = wire.MaxVolumeEntries   // the files and directories of a container's volumes
	MaxVolumes         = wire.MaxVolumes         // the volumes of a container
	MaxReadVolumeBytes = wire.MaxReadVolumeBytes // what ReadVolume returns
	MaxEmptyDirName    = wire.MaxEmptyDirName    // an emptyDir's name
)
