// `wsblk lab run SCENARIO`: one experiment from a scenario file to a results folder with the
// whole run as JSON and an HTML report; exit 0 when every check passed, 1 when one failed.
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { Command } from 'commander';
import { LabRunner, unsupported } from '../lab/runner.js';
import { ScenarioError, parseScenario, type Scenario } from '../lab/scenario.js';
import { CliError, EXIT } from './errors.js';

const RUN_HELP = `
The scenario (YAML or JSON) names the servers, the replica-set device, the fio workload and a
schedule of faults; its format is described in the README ("Experiments") and the examples
under examples/. The run starts each server (\`wsblk serve\` with an admin listener, on
127.0.0.1), connects the device over NBD, runs fio with verify and a writer of our own beside it,
applies the schedule at its times and samples the device every sampleInterval. At the end it
checks fio's verify result, the replicas compared by checksum, and that every acknowledged write
of ours reads back. A partition drops the server's packets on 127.0.0.1 with nftables where it
can (nft installed, CAP_NET_ADMIN), else it is a transport black hole; the results say which.

Results: DIR/results.json (the whole run) and DIR/report.html (verdict, IOPS, latency and
replica states over time, faults marked). Exit 0: every check passed; 1: a check failed or the
run could not be carried out; 2: a bad scenario or option.`;

/** ./lab-results/NAME-YYYYMMDD-HHMMSS */
function defaultFolder(name: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return resolve('lab-results', `${name}-${stamp}`);
}

function readScenario(file: string): Scenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read scenario ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.USAGE);
  }
  try {
    return parseScenario(text, file);
  } catch (e) {
    if (e instanceof ScenarioError) throw new CliError(e.message, EXIT.USAGE);
    throw e;
  }
}

export function labCommand(): Command {
  const lab = new Command('lab')
    .summary('run experiments: faults under load, metrics, a verdict and a report')
    .description('Run a whole experiment described in a scenario file (see `wsblk lab run --help`).')
    .exitOverride(); // before `run` is added, so it inherits it: a bad option exits 2, not 1
  lab.command('run')
    .description('Run the experiment SCENARIO describes and write its results folder; prints the folder and the verdict.')
    .argument('<scenario>', 'a scenario file (YAML or JSON), e.g. examples/kill-and-resync.yaml')
    .option('--out <dir>', 'the results folder (default ./lab-results/NAME-TIMESTAMP)')
    .option('--quiet', 'no progress line on stderr')
    .addHelpText('after', RUN_HELP)
    .action(async (file: string, o: { out?: string; quiet?: boolean }) => {
      const scenario = readScenario(file);
      const why = unsupported(scenario);
      if (why) throw new CliError(`scenario ${basename(file)}: ${why}`, EXIT.USAGE);
      const folder = o.out ? resolve(o.out) : defaultFolder(scenario.name);
      const runner = new LabRunner(scenario, { folder, ...(o.quiet && { quiet: true }) });
      const stop = (sig: string) => () => runner.abort(`interrupted by ${sig}`);
      const onInt = stop('SIGINT');
      const onTerm = stop('SIGTERM');
      process.once('SIGINT', onInt);
      process.once('SIGTERM', onTerm);
      try {
        const run = await runner.run();
        runner.write(run);
        process.stdout.write(`${folder}\n`);
        for (const c of run.verdict.checks) process.stdout.write(`${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail.split('\n')[0]}\n`);
        process.stdout.write(`${basename(file)}: ${run.verdict.ok ? 'PASS' : 'FAIL'}\n`);
        if (!run.verdict.ok) process.exitCode = EXIT.FAILURE;
      } catch (e) {
        throw new CliError(`lab run ${scenario.name}: ${(e as Error).message}`, EXIT.FAILURE);
      } finally {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
      }
    });
  return lab;
}
