/**
 * The VP-SDE time variable for a VE sigma range (as used by time-uniform schedules and DEIS): a linear-beta VP process
 * with sigma(tau) = sqrt(exp(beta_d tau^2 / 2 + beta_min tau) - 1), its parameters chosen so that sigma(1) = sigmaMax
 * and sigma(epsilon) = sigmaMin with epsilon = 1e-3.
 */
export interface VpTime {
  betaD: number;
  betaMin: number;
  epsilon: number;
  /** sigma(tau). */
  sigma(tau: number): number;
  /** tau(sigma), the inverse. */
  tau(sigma: number): number;
  /** d sigma / d tau. */
  dSigma(tau: number): number;
}

export function vpTime(sigmaMin: number, sigmaMax: number, epsilon = 1e-3): VpTime {
  const lMax = Math.log1p(sigmaMax * sigmaMax);
  const lMin = Math.log1p(sigmaMin * sigmaMin);
  const betaD = (2 * (lMin / epsilon - lMax)) / (epsilon - 1);
  const betaMin = lMax - 0.5 * betaD;
  const exponent = (tau: number) => 0.5 * betaD * tau * tau + betaMin * tau;
  const sigma = (tau: number) => Math.sqrt(Math.expm1(exponent(tau)));
  return {
    betaD,
    betaMin,
    epsilon,
    sigma,
    tau: (s) => (Math.sqrt(betaMin * betaMin + 2 * betaD * Math.log1p(s * s)) - betaMin) / betaD,
    dSigma: (tau) => ((betaD * tau + betaMin) * Math.exp(exponent(tau))) / (2 * sigma(tau)),
  };
}
