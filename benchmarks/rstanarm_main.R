# Times rstanarm::stan_glmer on the main model (logit_approaches_strata: any_cst on the nine
# approaches + (1 | stratum)), by default 4 chains x 1000 draws after 1000 warm-up (the
# package's `cst-bayes fit` defaults), on a CSV in the microdata contract ("#" banner lines are
# skipped). Prints one CSV line: wall_s,min_ess_bulk,divergences (wall_s is the stan_glmer call;
# benchmarks/samplers.py also times the whole Rscript process).
# Usage: Rscript benchmarks/rstanarm_main.R DATA.csv SEED [CHAINS DRAWS TUNE]
suppressPackageStartupMessages(library(rstanarm))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], comment.char = "#")
seed <- as.integer(args[2])
chains <- if (length(args) >= 3) as.integer(args[3]) else 4L
draws <- if (length(args) >= 4) as.integer(args[4]) else 1000L
tune <- if (length(args) >= 5) as.integer(args[5]) else 1000L
d$stratum <- factor(d$stratum)
f <- any_cst ~ court + prosecutor + training + victim_service + offense_code + child_welfare +
  task_force + advocates + mdt + (1 | stratum)
t <- system.time(m <- stan_glmer(f, data = d, family = binomial(), chains = chains,
                                 iter = draws + tune, warmup = tune, cores = 2, seed = seed,
                                 refresh = 0))
s <- summary(m)
approaches <- c("court", "prosecutor", "training", "victim_service", "offense_code", "child_welfare",
                "task_force", "advocates", "mdt")
ess <- min(s[approaches, "n_eff"])
sp <- rstan::get_sampler_params(m$stanfit, inc_warmup = FALSE)
div <- sum(sapply(sp, function(x) sum(x[, "divergent__"])))
cat(sprintf("%.3f,%.1f,%d\n", t[["elapsed"]], ess, as.integer(div)))
