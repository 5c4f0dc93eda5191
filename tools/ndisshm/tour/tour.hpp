// `ndisshm demo --api-tour`: a self-contained run of the whole NDIS shared
// memory contract, narrated step by step, ending in a summary. See tour.cpp
// for the steps and workload.hpp for what is allocated where.
#pragma once

#include "tour/workload.hpp"

namespace ndisshm::cli {

struct TourOptions {
    Workload workload;
    bool json = false;   // summary as JSON on stdout; narration, if any, on stderr
    bool quiet = false;  // no narration, only the summary
};

// 0 when every check held: no unexpected verifier finding, nothing
// outstanding, every provider context freed exactly once. 1 otherwise, with
// the problems on stderr.
int run_tour(const TourOptions& options);

}  // namespace ndisshm::cli
