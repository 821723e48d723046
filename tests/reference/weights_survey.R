# Reference values for tests/test_weights.py from R's survey package (Lumley).
#
# Run from the repository root:
#   Rscript tests/reference/weights_survey.R
# Reads  tests/reference/weights_sim.csv (SYNTHETIC: cst_bayes.simulate.simulate(20240101))
#        data/published/sampling_frames.csv
# Writes tests/reference/weights_survey_reference.csv
#        (scenario, statistic, variable, by, term, value)
#
# The weights are computed here from the published frame counts independently of the Python
# code: w_h = N_h * (n_h - i_h) / n_h / r_h (base weight x eligibility x nonresponse), with
# i_h the ineligible sampled agencies of the scenario, and trimming by survey::trimWeights.

suppressPackageStartupMessages(library(survey))
options(survey.lonely.psu = "fail")

dat <- read.csv("tests/reference/weights_sim.csv", comment.char = "#", stringsAsFactors = FALSE)
frames <- read.csv("data/published/sampling_frames.csv", stringsAsFactors = FALSE)
approaches <- c("court", "prosecutor", "training", "victim_service", "offense_code",
                "child_welfare", "task_force", "advocates", "mdt")
strata <- c("1-49", "50-999", "state", "1000+")
dat$stratum <- factor(dat$stratum, levels = strata)
N <- setNames(frames$population, frames$stratum)[strata]
n <- setNames(frames$sampled, frames$stratum)[strata]
r <- table(dat$stratum)[strata]

ineligible <- list(
  design = c("1-49" = 0, "50-999" = 0, "state" = 0, "1000+" = 0),
  eligibility_uniform = 245 * n / sum(n),
  eligibility_small = c("1-49" = 245, "50-999" = 0, "state" = 0, "1000+" = 0),
  eligibility_frame = 245 * N / sum(N),
  eligibility_large = c("1-49" = 0, "50-999" = 110, "state" = 84, "1000+" = 51)
)

rows <- list()
add <- function(scenario, statistic, variable, by, term, value) {
  rows[[length(rows) + 1]] <<- data.frame(scenario = scenario, statistic = statistic,
    variable = variable, by = by, term = term, value = as.numeric(value))
}

make_design <- function(scenario) {
  d <- dat
  if (scenario == "unweighted") {
    d$w <- 1
    return(svydesign(ids = ~1, weights = ~w, data = d))
  }
  base <- sub("_trimmed$", "", scenario)
  inel <- ineligible[[base]][strata]
  Nstar <- N * (n - inel) / n
  wh <- Nstar / as.numeric(r)
  d$w <- as.numeric(wh[as.character(d$stratum)])
  d$fpc <- as.numeric(Nstar[as.character(d$stratum)])
  des <- svydesign(ids = ~1, strata = ~stratum, fpc = ~fpc, weights = ~w, data = d)
  if (grepl("_trimmed$", scenario)) {
    pw <- weights(des)
    # trimWeights changes the weights and keeps the design's fpc (the eligible frame).
    des <- trimWeights(des, upper = 0.9 * median(pw), strict = TRUE)
  }
  des
}

for (sc in c("unweighted", "design", "eligibility_uniform", "eligibility_small",
             "eligibility_frame", "eligibility_large", "design_trimmed")) {
  des <- make_design(sc)
  w <- weights(des)
  for (s in strata) add(sc, "weight", "", s, "", w[dat$stratum == s][1])
  # National shares.
  for (v in c("any_cst", approaches)) {
    m <- svymean(as.formula(paste0("~", v)), des)
    add(sc, "mean", v, "", "", coef(m))
    add(sc, "mean_se", v, "", "", SE(m))
  }
  # Rao-Scott tests (default statistic "F").
  for (v in c(approaches, "any_cst")) {
    t <- svychisq(as.formula(paste0("~", v, "+stratum")), des)
    add(sc, "chisq_F", v, "stratum", "", t$statistic)
    add(sc, "chisq_ndf", v, "stratum", "", t$parameter[1])
    add(sc, "chisq_ddf", v, "stratum", "", t$parameter[2])
    add(sc, "chisq_p", v, "stratum", "", t$p.value)
  }
  for (v in approaches) {
    t <- svychisq(as.formula(paste0("~", v, "+any_cst")), des)
    add(sc, "chisq_F", v, "any_cst", "", t$statistic)
    add(sc, "chisq_ndf", v, "any_cst", "", t$parameter[1])
    add(sc, "chisq_ddf", v, "any_cst", "", t$parameter[2])
    add(sc, "chisq_p", v, "any_cst", "", t$p.value)
  }
  # Table 3 Analysis 1 without and with agency size. The size-adjusted SEs (stratum contrasts
  # included) are also the reference of the Williams-Savitsky-adjusted pseudo-posterior SDs
  # (tests/weighting/test_williams_savitsky.py).
  f0 <- as.formula(paste("any_cst ~", paste(approaches, collapse = "+")))
  f1 <- update(f0, . ~ . + stratum)
  for (adj in c("no", "yes")) {
    fit <- svyglm(if (adj == "no") f0 else f1, design = des, family = quasibinomial())
    cf <- summary(fit)$coefficients
    for (tm in rownames(cf)) {
      add(sc, "glm_coef", "", adj, tm, cf[tm, 1])
      add(sc, "glm_se", "", adj, tm, cf[tm, 2])
      add(sc, "glm_p", "", adj, tm, cf[tm, 4])
    }
  }
  # Risk difference of court alone (saturated: the domain-mean difference, exact SE).
  by <- svyby(~any_cst, ~court, des, svymean, covmat = TRUE)
  rd <- svycontrast(by, c(-1, 1))
  add(sc, "rd_single", "court", "", "", coef(rd))
  add(sc, "rd_single_se", "court", "", "", SE(rd))
  # Standardised (predictive-margin) risk differences of each approach, adjusted for the
  # other eight and size: svypredmeans (its variance omits the covariance of the two parts,
  # so tests compare the point estimate exactly and the SE loosely).
  for (a in approaches) {
    others <- setdiff(approaches, a)
    adjm <- svyglm(as.formula(paste("any_cst ~", paste(c(others, "stratum"), collapse = "+"))),
                   design = des, family = quasibinomial())
    pm <- svypredmeans(adjm, as.formula(paste0("~", a)))
    lv <- names(coef(pm))
    ct <- svycontrast(pm, setNames(ifelse(lv == "1", 1, -1), lv))
    add(sc, "rd_adjusted", a, "", "", coef(ct))
    add(sc, "rd_adjusted_se", a, "", "", SE(ct))
  }
}

out <- do.call(rbind, rows)
write.csv(out, "tests/reference/weights_survey_reference.csv", row.names = FALSE)
cat(sprintf("R %s, survey %s: wrote %d reference values\n", getRversion(),
            packageVersion("survey"), nrow(out)))
