#include "providers/address_mode.hpp"
