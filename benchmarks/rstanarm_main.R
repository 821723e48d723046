# Times rstanarm::stan_glmer on the main model (logit_approaches_strata: any_cst on the nine
# approaches + (1 | stratum)), 4 chains x 1000 draws after 1000 warm-up, on the CSV that
# benchmarks/samplers.py writes. Prints one CSV line: wall_s,min_ess_bulk,divergences.
# Usage: Rscript benchmarks/rstanarm_main.R DATA.csv SEED
suppressPackageStartupMessages(library(rstanarm))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], comment.char = "#")
seed <- as.integer(args[2])
f <- any_cst ~ court + prosecutor + training + victim_service + offense_code + child_welfare +
  task_force + advocates + mdt + (1 | stratum)
t <- system.time(m <- stan_glmer(f, data = d, family = binomial(), chains = 4, iter = 2000,
                                 cores = 2, seed = seed, refresh = 0))
s <- summary(m)
approaches <- c("court", "prosecutor", "training", "victim_service", "offense_code", "child_welfare",
                "task_force", "advocates", "mdt")
ess <- min(s[approaches, "n_eff"])
sp <- rstan::get_sampler_params(m$stanfit, inc_warmup = FALSE)
div <- sum(sapply(sp, function(x) sum(x[, "divergent__"])))
cat(sprintf("%.3f,%.1f,%d\n", t[["elapsed"]], ess, as.integer(div)))
