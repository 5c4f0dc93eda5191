#include "os/pagemap.hpp"
