# Reference values for tests/test_frequentist.py from base R (stats) and the sandwich package.
#
# Run from the repository root:
#   Rscript tests/reference/frequentist_r.R
# Reads  tests/reference/weights_sim.csv (SYNTHETIC: cst_bayes.simulate.simulate(20240101))
# Writes tests/reference/frequentist_r_reference.csv
#        (table, variable, term, adjusted_for_size, link, statistic, value);
#        for table3 rows 'variable' holds the analysis number (1 or 2)
#
# An implementation independent of scipy/statsmodels: chisq.test, anova(lm()), cor.test,
# glm(binomial) with Wald intervals (confint.default), and glm(poisson) with the HC0
# sandwich covariance of sandwich::vcovHC.

suppressPackageStartupMessages(library(sandwich))

dat <- read.csv("tests/reference/weights_sim.csv", comment.char = "#", stringsAsFactors = FALSE)
approaches <- c("court", "prosecutor", "training", "victim_service", "offense_code",
                "child_welfare", "task_force", "advocates", "mdt")
strata <- c("1-49", "50-999", "state", "1000+")
dat$stratum <- factor(dat$stratum, levels = strata)
dat$n_approaches <- rowSums(dat[, approaches])

rows <- list()
add <- function(table, variable, term, adj, link, statistic, value) {
  rows[[length(rows) + 1]] <<- data.frame(table = table, variable = variable, term = term,
    adjusted_for_size = adj, link = link, statistic = statistic, value = value)
}

for (v in c(approaches, "any_cst")) {
  t <- suppressWarnings(chisq.test(table(dat[[v]], dat$stratum), correct = FALSE))
  add("table1", v, "", "", "", "chi2", unname(t$statistic))
  add("table1", v, "", "", "", "p_value", t$p.value)
}

a <- anova(lm(n_approaches ~ stratum, data = dat))
add("anova", "n_approaches", "stratum", "", "", "F", a["stratum", "F value"])
add("anova", "n_approaches", "stratum", "", "", "p_value", a["stratum", "Pr(>F)"])

for (i in 2:length(approaches)) for (j in 1:(i - 1)) {
  ct <- cor.test(dat[[approaches[i]]], dat[[approaches[j]]])
  add("table2", approaches[i], approaches[j], "", "", "r", unname(ct$estimate))
  add("table2", approaches[i], approaches[j], "", "", "p_value", ct$p.value)
}

for (v in approaches) {
  t <- chisq.test(table(dat[[v]], dat$any_cst), correct = FALSE)
  add("fig1", v, "", "", "", "chi2", unname(t$statistic))
  add("fig1", v, "", "", "", "p_value", t$p.value)
}

size <- " + stratum"
forms <- list(
  list(1, "no", paste("any_cst ~", paste(approaches, collapse = " + "))),
  list(1, "yes", paste("any_cst ~", paste(approaches, collapse = " + "), size)),
  list(2, "no", "any_cst ~ n_approaches"),
  list(2, "yes", paste("any_cst ~ n_approaches", size))
)
z <- qnorm(0.975)
for (f in forms) {
  for (link in c("logit", "log")) {
    if (link == "logit") {
      m <- glm(as.formula(f[[3]]), data = dat, family = binomial(), control = glm.control(epsilon = 1e-12, maxit = 100))
      se <- sqrt(diag(vcov(m)))
    } else {
      m <- glm(as.formula(f[[3]]), data = dat, family = poisson(), control = glm.control(epsilon = 1e-12, maxit = 100))
      se <- sqrt(diag(vcovHC(m, type = "HC0")))
    }
    b <- coef(m)
    an <- as.character(f[[1]])  # Table 3 rows keep the analysis number in 'variable'
    for (k in names(b)[-1]) {
      term <- sub("^stratum(.*)$", "stratum[\\1]", k)
      add("table3", an, term, f[[2]], link, "estimate", exp(b[[k]]))
      add("table3", an, term, f[[2]], link, "ci_low", exp(b[[k]] - z * se[[k]]))
      add("table3", an, term, f[[2]], link, "ci_high", exp(b[[k]] + z * se[[k]]))
      add("table3", an, term, f[[2]], link, "p_value", 2 * pnorm(-abs(b[[k]] / se[[k]])))
    }
  }
}

out <- do.call(rbind, rows)
write.csv(out, "tests/reference/frequentist_r_reference.csv", row.names = FALSE)
cat("wrote", nrow(out), "reference values\n")
