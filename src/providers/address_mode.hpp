// Placeholder: how a block is described in SG elements per address mode (being written).
#pragma once
