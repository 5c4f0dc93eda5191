// Placeholder: physical addresses from /proc/self/pagemap (being written).
#pragma once
